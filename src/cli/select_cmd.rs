//! `steerscope select`: which layer's direction steers refusal best.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Args;

use steerscope::steer::select::select_layer;
use steerscope::vector::SteeringVector;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct SelectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A per-layer vector file (`direction.L` tensors), e.g. from `steerscope vector`.
    #[arg(long, short = 'v')]
    pub vector: PathBuf,
    /// Harmful prompts: ablating the direction should stop their refusals.
    #[arg(long)]
    pub harmful: PathBuf,
    /// Harmless prompts: adding the direction should make them refuse.
    #[arg(long)]
    pub harmless: PathBuf,
    /// Strengths to add, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 1.0, 1.5, 2.0, 3.0], allow_hyphen_values = true)]
    pub strengths: Vec<f64>,
    /// Positions the addition applies to: all, prompt or generated.
    #[arg(long, default_value = "all", value_parser = super::parse_scope)]
    pub scope: steerscope::hooks::Scope,
    /// Refusal rate the addition must reach.
    #[arg(long, default_value_t = 0.8)]
    pub target: f64,
    /// Layers whose ablation moves harmless next-token distributions by this KL or more are
    /// not eligible.
    #[arg(long, default_value_t = 0.1)]
    pub max_kl: f64,
    #[command(flatten)]
    pub eval: super::EvalArgs,
    /// Write the chosen layer and the grid into the vector's JSON sidecar.
    #[arg(long)]
    pub write_sidecar: bool,
    /// Print the whole grid as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn select(a: &SelectArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let vector = SteeringVector::load_for(&a.vector, &model)?;
    let harmful = a.eval.prompts(&a.harmful)?;
    let harmless = a.eval.prompts(&a.harmless)?;
    let opts = a.eval.options()?;
    let never = AtomicBool::new(false);
    let sel = select_layer(
        &model,
        &vector,
        &harmful,
        &harmless,
        &a.strengths,
        a.scope,
        a.target,
        a.max_kl,
        &opts,
        &never,
        &mut super::progress("selecting", "prompts"),
    )?;
    eprintln!();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&sel)?);
    } else {
        println!(
            "baseline: harmless refusal {:.0}%, harmful refusal {:.0}%",
            100.0 * sel.baseline_harmless_refusal,
            100.0 * sel.baseline_harmful_refusal
        );
        let head: Vec<String> = sel
            .strengths
            .iter()
            .map(|s| format!("add {s:>4}"))
            .collect();
        println!("layer  {}  ablated  (score)     KL", head.join("  "));
        for l in &sel.layers {
            let cells: Vec<String> = l
                .added_refusal
                .iter()
                .map(|r| format!("{:>7.0}%", 100.0 * r))
                .collect();
            println!(
                "{:>5}  {}  {:>6.0}%  ({:>6.2})  {:>6.3}{}",
                l.layer_idx,
                cells.join(" "),
                100.0 * l.ablated_refusal,
                l.ablated_score,
                l.ablated_kl,
                if l.eligible { "" } else { "  (not eligible)" }
            );
        }
        match sel.best_layer {
            Some(l) => println!("best layer: {l}"),
            None => println!(
                "no eligible layer reaches {:.0}% refusal under addition",
                100.0 * a.target
            ),
        }
    }
    if a.write_sidecar {
        let selection = serde_json::json!({
            "harmful": a.harmful.file_name().map(|f| f.to_string_lossy().into_owned()),
            "harmless": a.harmless.file_name().map(|f| f.to_string_lossy().into_owned()),
            "n_harmful": harmful.len(),
            "n_harmless": harmless.len(),
            "grid": sel,
        });
        let side = steerscope::vector::update_sidecar(
            &a.vector,
            &[
                ("best_layer", serde_json::json!(sel.best_layer)),
                ("scope", serde_json::json!(sel.scope)),
                ("selection", selection),
            ],
        )?;
        eprintln!("wrote best_layer into {}", side.display());
    }
    Ok(())
}
