//! `steerscope train-demo`: train the embedded demo model and its over-refusal rounds.

use std::path::PathBuf;

use clap::Args;

use steerscope::demo::{train_demo as run, DemoOptions};

#[derive(Args, Debug)]
pub struct TrainDemoArgs {
    /// Output folder (an HF model folder with `rounds/` inside).
    #[arg(long, default_value = "assets/demo-model")]
    pub out: PathBuf,
    /// Seed for the corpus, the initial weights and the batch order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Training steps before round 0 is saved.
    #[arg(long)]
    pub round0_steps: Option<usize>,
    /// Training steps per over-refusal round.
    #[arg(long)]
    pub round_steps: Option<usize>,
    /// Number of over-refusal rounds after round 0.
    #[arg(long)]
    pub rounds: Option<usize>,
}

pub fn train_demo(a: &TrainDemoArgs) -> anyhow::Result<()> {
    let mut opts = DemoOptions::default();
    if let Some(s) = a.seed {
        opts.seed = s;
    }
    if let Some(s) = a.round0_steps {
        opts.round0_steps = s;
    }
    if let Some(s) = a.round_steps {
        opts.round_steps = s;
    }
    if let Some(r) = a.rounds {
        opts.n_rounds = r;
    }
    run(&a.out, &opts, &mut |line| eprintln!("{line}"))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
