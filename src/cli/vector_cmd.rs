//! `steerscope vector`: a steering vector from two contrastive prompt sets.

use std::path::PathBuf;

use clap::Args;

use steerscope::extract::{ExtractOptions, Method, Positions};
use steerscope::vector::{extract_to_file, ExtractJob};

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
    /// Output file: `.safetensors` (tensors `direction.L` for every layer, metadata inside and a
    /// `.json` sidecar beside it) or `.gguf` (a llama.cpp / repeng control vector, layers >= 1).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Positions read: last, -K (K-th token from the end), post-instruction or mean.
    #[arg(long, default_value = "last", allow_hyphen_values = true)]
    pub positions: Positions,
    /// mean-diff, or pca-diff (first principal component of paired differences).
    #[arg(long, default_value = "mean-diff")]
    pub method: Method,
    /// Prompts per forward pass (right-padded).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Feed prompts as-is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Use only the first N prompts of each set (Arditi et al. use 128 + 128).
    #[arg(long)]
    pub limit: Option<usize>,
}

pub fn vector(a: &VectorArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let job = ExtractJob {
        positive: a.positive.clone(),
        negative: a.negative.clone(),
        out: a.out.clone(),
        limit: a.limit,
        method: a.method,
        opts: ExtractOptions {
            positions: a.positions,
            chat: !a.raw,
            batch_size: a.batch_size,
        },
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    };
    let report = extract_to_file(&model, &job, &mut super::progress("extracting", "prompts"))?;
    eprintln!(" ({:.1} s)", report.seconds);
    match &report.sidecar {
        Some(side) => println!(
            "wrote {} ({} layers) and {}",
            a.out.display(),
            report.written_layers.len(),
            side.display()
        ),
        None => println!(
            "wrote {} (llama.cpp control vector, layers {}..={})",
            a.out.display(),
            report.written_layers.first().copied().unwrap_or(1),
            report.written_layers.last().copied().unwrap_or(1)
        ),
    }
    Ok(())
}
