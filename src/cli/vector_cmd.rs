//! `steerscope vector`: a steering vector from two contrastive prompt sets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::IndexOp;
use clap::Args;
use sha2::{Digest, Sha256};

use steerscope::extract::{direction, read_prompts, ExtractOptions, Method, Positions};

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

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
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
    let mut positive = read_prompts(&a.positive)?;
    let mut negative = read_prompts(&a.negative)?;
    if let Some(n) = a.limit {
        positive.truncate(n);
        negative.truncate(n);
    }
    let opts = ExtractOptions {
        positions: a.positions,
        chat: !a.raw,
        batch_size: a.batch_size,
    };
    let start = Instant::now();
    let diff = direction(
        &model,
        &positive,
        &negative,
        a.method,
        &opts,
        &mut super::progress("extracting", "prompts"),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    eprintln!(" ({seconds:.1} s)");
    let n_layers = model.cfg().n_layers;
    let dirs = (0..n_layers)
        .map(|l| Ok((l, diff.i(l)?)))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let norms: Vec<f32> = dirs
        .iter()
        .map(|(_, t)| {
            t.sqr()
                .and_then(|s| s.sum_all())
                .and_then(|s| s.sqrt())
                .and_then(|s| s.to_scalar::<f32>())
        })
        .collect::<candle_core::Result<_>>()?;
    let model_name = model
        .info
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    let method = match a.method {
        Method::MeanDiff => "mean difference (positive - negative), unnormalized".to_owned(),
        Method::PcaDiff => "first principal component of paired differences (positive - negative), scaled by the mean separation".to_owned(),
    };
    let mut meta = BTreeMap::new();
    meta.insert("model".to_owned(), model_name.clone().unwrap_or_default());
    meta.insert("model_hint".to_owned(), model.info.family.to_string());
    meta.insert(
        "hidden_size".to_owned(),
        model.cfg().hidden_size.to_string(),
    );
    meta.insert("n_layers".to_owned(), n_layers.to_string());
    meta.insert(
        "layer_convention".to_owned(),
        "direction.L is added to blocks.L.hook_resid_post (the output of block L; llama.cpp's direction.L)".to_owned(),
    );
    meta.insert("method".to_owned(), a.method.to_string());
    meta.insert("positions".to_owned(), a.positions.to_string());
    meta.insert("chat_template".to_owned(), (!a.raw).to_string());
    meta.insert("positive".to_owned(), file_name(&a.positive));
    meta.insert("negative".to_owned(), file_name(&a.negative));
    meta.insert("positive_sha256".to_owned(), sha256_file(&a.positive)?);
    meta.insert("negative_sha256".to_owned(), sha256_file(&a.negative)?);
    meta.insert(
        "steerscope_version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    let written = steerscope::vector::save(&a.out, &dirs, &meta)?;
    let is_gguf = a
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        println!(
            "wrote {} (llama.cpp control vector, layers {}..={})",
            a.out.display(),
            written.first().copied().unwrap_or(1),
            written.last().copied().unwrap_or(1)
        );
        return Ok(());
    }
    let sidecar = serde_json::json!({
        "model": model_name,
        "model_hint": meta["model_hint"],
        "hidden_size": model.cfg().hidden_size,
        "n_layers": n_layers,
        "layer_convention": meta["layer_convention"],
        "method": method,
        "positions": a.positions.to_string(),
        "chat_template": !a.raw,
        "positive": meta["positive"],
        "negative": meta["negative"],
        "positive_sha256": meta["positive_sha256"],
        "negative_sha256": meta["negative_sha256"],
        "n_positive": positive.len(),
        "n_negative": negative.len(),
        "norms": norms,
        "steerscope_version": env!("CARGO_PKG_VERSION"),
        "command": std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        "regenerate": "bash scripts/make-vectors.sh (all shipped vectors)",
    });
    let side = a.out.with_extension("json");
    super::write_file(&side, &(serde_json::to_string_pretty(&sidecar)? + "\n"))?;
    println!(
        "wrote {} ({} layers) and {}",
        a.out.display(),
        n_layers,
        side.display()
    );
    Ok(())
}
