//! `steerscope vector`: a steering vector from two contrastive prompt sets.

use std::io::Write;
use std::path::PathBuf;

use candle_core::IndexOp;
use clap::Args;

use steerscope::extract::{mean_difference, read_prompts};
use steerscope::vector::save_per_layer;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct VectorArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompts for the side the vector points toward (JSON array, or one per line).
    #[arg(long)]
    pub positive: PathBuf,
    /// Prompts for the side it points away from.
    #[arg(long)]
    pub negative: PathBuf,
    /// Output .safetensors (tensors `direction.L` for every layer; a `.json` sidecar beside it).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Feed prompts as-is, without the chat template.
    #[arg(long)]
    pub raw: bool,
}

pub fn vector(a: &VectorArgs) -> anyhow::Result<()> {
    // Fail before the (long) extraction, not after it.
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            anyhow::bail!(
                "--out {}: the folder {} does not exist (create it first)",
                a.out.display(),
                parent.display()
            );
        }
    }
    let model = a.model.load()?;
    let positive = read_prompts(&a.positive)?;
    let negative = read_prompts(&a.negative)?;
    let mut stderr = std::io::stderr();
    let diff = mean_difference(&model, &positive, &negative, !a.raw, &mut |done, total| {
        let _ = write!(stderr, "\rextracting: {done}/{total} prompts");
    })?;
    eprintln!();
    let n_layers = model.cfg().n_layers;
    let dirs = (0..n_layers)
        .map(|l| Ok((l, diff.i(l)?)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    save_per_layer(&a.out, &dirs)?;
    let norms: Vec<f32> = dirs
        .iter()
        .map(|(_, t)| {
            t.sqr()
                .and_then(|s| s.sum_all())
                .and_then(|s| s.sqrt())
                .and_then(|s| s.to_scalar::<f32>())
        })
        .collect::<candle_core::Result<_>>()?;
    let sidecar = serde_json::json!({
        "model": model.info.path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "hidden_size": model.cfg().hidden_size,
        "n_layers": n_layers,
        "layer_convention": "direction.L is added to blocks.L.hook_resid_post (the output of block L)",
        "method": "mean difference (positive - negative), unnormalized",
        "positions": "last prompt token",
        "chat_template": !a.raw,
        "positive": a.positive.file_name().map(|f| f.to_string_lossy().into_owned()),
        "negative": a.negative.file_name().map(|f| f.to_string_lossy().into_owned()),
        "n_positive": positive.len(),
        "n_negative": negative.len(),
        "norms": norms,
        "steerscope_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        "regenerate": "bash scripts/make-vectors.sh (all shipped vectors)",
    });
    let side = a.out.with_extension("json");
    std::fs::write(&side, serde_json::to_string_pretty(&sidecar)?)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", side.display()))?;
    println!(
        "wrote {} ({} layers) and {}",
        a.out.display(),
        n_layers,
        side.display()
    );
    Ok(())
}
