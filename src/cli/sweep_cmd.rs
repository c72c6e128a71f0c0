//! `steerscope sweep` (refusal rate over strengths x layers) and `steerscope best-of-n`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use clap::Args;

use steerscope::generate::Sampling;
use steerscope::hooks::{Scope, Steering};
use steerscope::steer::sweep::{best_of_n, sweep as run_sweep, SweepOptions};
use steerscope::vector::SteeringVector;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The steering vector (per-layer directions, or one for all layers).
    #[arg(long, short = 'v')]
    pub vector: PathBuf,
    /// Prompts whose refusal rate is measured (e.g. harmless ones, to steer toward refusal).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Harmless prompts for the KL cost of each setting; default: --prompts.
    #[arg(long)]
    pub kl_prompts: Option<PathBuf>,
    /// Strengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 1.0, 2.0, 4.0, 8.0], allow_hyphen_values = true)]
    pub strengths: Vec<f64>,
    /// Layers, comma-separated; default: every layer.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// Positions the addition applies to: all, prompt or generated.
    #[arg(long, default_value = "all", value_parser = super::parse_scope)]
    pub scope: Scope,
    /// Also measure directional ablation of this layer's direction.
    #[arg(long)]
    pub ablate_layer: Option<usize>,
    /// Refusal rate the suggestion must reach.
    #[arg(long, default_value_t = 0.8)]
    pub target: f64,
    #[command(flatten)]
    pub eval: super::EvalArgs,
    /// Write the grid as CSV here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn sweep(a: &SweepArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let vector = SteeringVector::load_for(&a.vector, &model)?;
    let prompts = a.eval.prompts(&a.prompts)?;
    let kl_prompts = a
        .eval
        .prompts(a.kl_prompts.as_ref().unwrap_or(&a.prompts))?;
    let layers = if a.layers.is_empty() {
        (0..model.cfg().n_layers).collect()
    } else {
        a.layers.clone()
    };
    let opts = SweepOptions {
        layers,
        strengths: a.strengths.clone(),
        scope: a.scope,
        ablate_layer: a.ablate_layer,
        target_rate: a.target,
        eval: a.eval.options()?,
    };
    let never = AtomicBool::new(false);
    let start = Instant::now();
    let res = run_sweep(
        &model,
        &vector,
        &prompts,
        &kl_prompts,
        &opts,
        &never,
        &mut super::progress("sweeping", "prompts"),
    )?;
    eprintln!(" ({:.1} s)", start.elapsed().as_secs_f64());
    if let Some(path) = &a.csv {
        super::write_file(path, &res.to_csv())?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&res)?);
        return Ok(());
    }
    println!(
        "refusal rate on {} prompts (baseline {:.0}%), scope {}; KL on {} prompts in brackets",
        prompts.len(),
        100.0 * res.baseline_rate,
        res.scope,
        kl_prompts.len()
    );
    let head: Vec<String> = res.strengths.iter().map(|s| format!("{s:>14}")).collect();
    println!("layer {}", head.join(""));
    for &l in &res.layers {
        let cells: Vec<String> = res
            .cells
            .iter()
            .filter(|c| c.layer_idx == Some(l))
            .map(|c| format!("{:>6.0}% ({:>5.2})", 100.0 * c.refusal_rate, c.kl))
            .collect();
        println!("{l:>5} {}", cells.join(""));
    }
    if let Some(c) = &res.ablation {
        println!(
            "ablated (layer {} direction): {:.0}% (KL {:.3})",
            a.ablate_layer.unwrap_or(0),
            100.0 * c.refusal_rate,
            c.kl
        );
    }
    match &res.suggestion {
        Some(s) => println!(
            "suggested: layer {}, strength {} ({:.0}% refusal, KL {:.3})",
            s.layer_idx,
            s.strength,
            100.0 * s.refusal_rate,
            s.kl
        ),
        None => println!("no setting reaches {:.0}% refusal", 100.0 * res.target_rate),
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BestOfNArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts (JSON array, or one per line).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Samples per prompt.
    #[arg(long, short = 'n', default_value_t = 8)]
    pub n: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Seed of the first sample (sample i uses seed + i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steer every sample with this vector (with --layer and --strength).
    #[arg(long, short = 'v')]
    pub vector: Option<PathBuf>,
    #[arg(long, short = 'l', requires = "vector")]
    pub layer: Option<usize>,
    #[arg(long, short = 's', default_value_t = 0.0, allow_hyphen_values = true)]
    pub strength: f64,
    #[arg(long, default_value = "all", value_parser = super::parse_scope)]
    pub scope: Scope,
    #[command(flatten)]
    pub eval: super::EvalArgs,
    /// Print JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
}

pub fn best_of_n_cmd(a: &BestOfNArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let prompts = a.eval.prompts(&a.prompts)?;
    let steering = match (&a.vector, a.layer) {
        (Some(v), Some(l)) => {
            let v = SteeringVector::load_for(v, &model)?;
            Steering::add(l, v.for_layer(l)?, a.strength, a.scope)
        }
        (Some(_), None) => anyhow::bail!("--layer: missing (needed with --vector)"),
        _ => Steering::default(),
    };
    let never = AtomicBool::new(false);
    let rows = best_of_n(
        &model,
        &prompts,
        &steering,
        a.n,
        Sampling {
            temperature: a.temperature,
            top_p: a.top_p,
        },
        a.seed,
        &a.eval.options()?,
        &never,
        &mut super::progress("sampling", "prompts"),
    )?;
    eprintln!();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mean_fraction = rows.iter().map(|r| r.refusal_fraction).sum::<f64>() / rows.len() as f64;
    let firsts: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.samples_to_first_refusal)
        .collect();
    let never_refused = rows.len() - firsts.len();
    println!(
        "{} prompts x {} samples (temperature {}): {:.1}% of samples refuse; {} of {} prompts refuse at least once",
        rows.len(),
        a.n,
        a.temperature,
        100.0 * mean_fraction,
        firsts.len(),
        rows.len()
    );
    if !firsts.is_empty() {
        println!(
            "samples until the first refusal: mean {:.2} over the prompts that refused ({} never did)",
            firsts.iter().sum::<usize>() as f64 / firsts.len() as f64,
            never_refused
        );
    }
    Ok(())
}
