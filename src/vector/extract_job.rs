//! The `vector` job, shared by the CLI and the GUI worker: read two prompt sets, extract a
//! direction per layer, and write it with its metadata (and a JSON sidecar for safetensors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::IndexOp;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::extract::{direction, read_prompts, ExtractOptions, Method};
use crate::model::Model;

/// What to extract, from which files, into which file.
#[derive(Debug, Clone)]
pub struct ExtractJob {
    /// Prompts for the side the vector points toward.
    pub positive: PathBuf,
    /// Prompts for the side it points away from.
    pub negative: PathBuf,
    /// `.safetensors` (plus a `.json` sidecar) or `.gguf` (a llama.cpp control vector).
    pub out: PathBuf,
    /// Use only the first N prompts of each set.
    pub limit: Option<usize>,
    pub method: Method,
    pub opts: ExtractOptions,
    /// How the job was asked for (the CLI's arguments), recorded in the sidecar.
    pub command: String,
}

/// What an extraction wrote.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    /// Layers written to the vector file.
    pub written_layers: Vec<usize>,
    /// The JSON sidecar (safetensors output only).
    pub sidecar: Option<PathBuf>,
    pub n_positive: usize,
    pub n_negative: usize,
    pub seconds: f64,
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Run `job` on `model`. `progress(done, total)` counts prompts of both sets. Checks the output
/// folder before the (long) extraction, not after it.
pub fn extract_to_file(
    model: &Model,
    job: &ExtractJob,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExtractReport> {
    if let Some(parent) = job.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(Error::BadFile {
                path: job.out.clone(),
                message: format!(
                    "the folder {} does not exist (create it first)",
                    parent.display()
                ),
            });
        }
    }
    let mut positive = read_prompts(&job.positive)?;
    let mut negative = read_prompts(&job.negative)?;
    if let Some(n) = job.limit {
        positive.truncate(n);
        negative.truncate(n);
    }
    let start = Instant::now();
    let diff = direction(model, &positive, &negative, job.method, &job.opts, progress)?;
    let seconds = start.elapsed().as_secs_f64();
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
    let method = match job.method {
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
    meta.insert("method".to_owned(), job.method.to_string());
    meta.insert("positions".to_owned(), job.opts.positions.to_string());
    meta.insert("chat_template".to_owned(), job.opts.chat.to_string());
    meta.insert("positive".to_owned(), file_name(&job.positive));
    meta.insert("negative".to_owned(), file_name(&job.negative));
    meta.insert("positive_sha256".to_owned(), sha256_file(&job.positive)?);
    meta.insert("negative_sha256".to_owned(), sha256_file(&job.negative)?);
    meta.insert(
        "steerscope_version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    let written_layers = super::save(&job.out, &dirs, &meta)?;
    let is_gguf = job
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    let mut report = ExtractReport {
        written_layers,
        sidecar: None,
        n_positive: positive.len(),
        n_negative: negative.len(),
        seconds,
    };
    if is_gguf {
        return Ok(report);
    }
    let sidecar = serde_json::json!({
        "model": model_name,
        "model_hint": meta["model_hint"],
        "hidden_size": model.cfg().hidden_size,
        "n_layers": n_layers,
        "layer_convention": meta["layer_convention"],
        "method": method,
        "positions": job.opts.positions.to_string(),
        "chat_template": job.opts.chat,
        "positive": meta["positive"],
        "negative": meta["negative"],
        "positive_sha256": meta["positive_sha256"],
        "negative_sha256": meta["negative_sha256"],
        "n_positive": positive.len(),
        "n_negative": negative.len(),
        "norms": norms,
        "steerscope_version": env!("CARGO_PKG_VERSION"),
        "command": job.command,
        "regenerate": "bash scripts/make-vectors.sh (all shipped vectors)",
    });
    let side = job.out.with_extension("json");
    let text = serde_json::to_string_pretty(&sidecar).map_err(|e| Error::BadFile {
        path: side.clone(),
        message: format!("cannot encode the sidecar: {e}"),
    })? + "\n";
    std::fs::write(&side, text).map_err(|e| Error::io(&side, e))?;
    report.sidecar = Some(side);
    Ok(report)
}
