//! Steering vectors on disk: one direction for every layer, or one per layer.
//!
//! Formats, by extension: `.safetensors` (with string metadata), `.gguf` (llama.cpp / repeng
//! control vectors), `.npy` and `.pt`/`.pth`. Accepted layouts: a single 1-D tensor `[hidden]`
//! (any name); tensors `direction.{l}` (the repeng / llama.cpp control-vector naming) or
//! `layer.{l}`, each `[hidden]`; or one 2-D tensor `[n_layers, hidden]`. Layer `l` means the
//! output of block `l` (`blocks.{l}.hook_resid_post`), which is also llama.cpp's `direction.l`.

mod extract_job;
mod formats;

pub use extract_job::{extract_to_file, ExtractJob, ExtractReport};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// A steering vector file, loaded.
#[derive(Debug, Clone)]
pub struct SteeringVector {
    pub path: PathBuf,
    /// One direction for all layers.
    shared: Option<Tensor>,
    /// Per-layer directions.
    per_layer: BTreeMap<usize, Tensor>,
    pub hidden_size: usize,
    /// String metadata stored with the vector (safetensors metadata, GGUF model hint).
    pub metadata: BTreeMap<String, String>,
}

impl SteeringVector {
    /// Read a steering vector (format by extension), checking every tensor is finite and
    /// `hidden_size` wide.
    pub fn load(path: &Path, hidden_size: usize, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                expected: "a steering vector (.safetensors, .gguf, .npy or .pt)".into(),
            });
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let raw = match ext.as_str() {
            "gguf" => formats::read_gguf(path, device)?,
            "npy" => formats::read_npy(path, device)?,
            "pt" | "pth" => formats::read_pt(path, device)?,
            _ => formats::read_safetensors(path, device)?,
        };
        let metadata = raw.metadata;
        let tensors = raw.tensors;
        let mut shared = None;
        let mut per_layer = BTreeMap::new();
        let n = tensors.len();
        for (name, t) in tensors {
            let t = t.to_dtype(DType::F32)?;
            let layer = name
                .strip_prefix("direction.")
                .or_else(|| name.strip_prefix("layer."))
                .and_then(|l| l.parse::<usize>().ok());
            match (t.rank(), layer) {
                (1, Some(l)) => {
                    per_layer.insert(l, t);
                }
                (1, None) if n == 1 => shared = Some(t),
                (2, None) if n == 1 => {
                    for (l, row) in t.chunk(t.dim(0)?, 0)?.into_iter().enumerate() {
                        per_layer.insert(l, row.squeeze(0)?);
                    }
                }
                _ => {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "tensor `{name}` with shape {:?} does not fit (expected one [hidden] tensor, `direction.N` tensors, or one [layers, hidden] tensor)",
                            t.dims()
                        ),
                    ))
                }
            }
        }
        let all: Vec<(String, &Tensor)> = shared
            .iter()
            .map(|t| ("direction".to_owned(), t))
            .chain(per_layer.iter().map(|(l, t)| (format!("direction.{l}"), t)))
            .collect();
        if all.is_empty() {
            return Err(Error::bad_file(
                path,
                "holds no tensors (expected a steering direction)",
            ));
        }
        for (name, t) in all {
            let width = t.elem_count();
            if width != hidden_size {
                return Err(Error::WidthMismatch {
                    what: format!("{} tensor `{name}`", path.display()),
                    found: width,
                    expected: hidden_size,
                });
            }
            let values = t.to_vec1::<f32>()?;
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::bad_file(
                    path,
                    format!("tensor `{name}` holds NaN or infinite values"),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            shared,
            per_layer,
            hidden_size,
            metadata,
        })
    }

    /// [`SteeringVector::load`], checked against `model`'s width and placed on its device.
    pub fn load_for(path: &Path, model: &crate::model::Model) -> Result<Self> {
        Self::load(path, model.cfg().hidden_size, model.transformer.device())
    }

    /// The direction for `layer_idx`.
    pub fn for_layer(&self, layer_idx: usize) -> Result<Tensor> {
        if let Some(t) = self.per_layer.get(&layer_idx) {
            return Ok(t.clone());
        }
        self.shared.clone().ok_or_else(|| {
            Error::bad_file(
                &self.path,
                format!(
                    "has no direction for layer {layer_idx} (it has layers {:?})",
                    self.per_layer.keys().collect::<Vec<_>>()
                ),
            )
        })
    }

    /// Layers with their own direction (empty for a shared one).
    #[must_use]
    pub fn layers(&self) -> Vec<usize> {
        self.per_layer.keys().copied().collect()
    }
}

/// Save per-layer directions as `direction.{l}` tensors, with string metadata (safetensors).
pub fn save_per_layer(path: &Path, directions: &[(usize, Tensor)]) -> Result<()> {
    formats::write_safetensors(path, directions, &BTreeMap::new())
}

/// Save per-layer directions, the format chosen by extension: `.gguf` writes a llama.cpp
/// control vector (layers >= 1; `metadata["model_hint"]` becomes `controlvector.model_hint`),
/// anything else safetensors with `metadata`. Returns the layers written.
pub fn save(
    path: &Path,
    directions: &[(usize, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<usize>> {
    let is_gguf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        let hint = metadata.get("model_hint").map_or("llama", String::as_str);
        formats::write_gguf(path, directions, hint)
    } else {
        formats::write_safetensors(path, directions, metadata)?;
        Ok(directions.iter().map(|(l, _)| *l).collect())
    }
}

/// Folders searched for shipped vectors: `./vectors` and the source tree's `vectors/`.
fn vector_dirs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("vectors"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors"),
    ]
}

/// The files in `dir` with one of `extensions`, sorted; `None` when `dir` cannot be read.
fn files_in(dir: &Path, extensions: &[&str]) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        })
        .collect();
    found.sort();
    Some(found)
}

/// Every shipped vector file (`vectors/*.safetensors` and `*.gguf`), sorted by name, from the
/// first `vectors/` folder that exists (the working directory's, else the crate's).
#[must_use]
pub fn shipped_vectors() -> Vec<PathBuf> {
    vector_dirs()
        .iter()
        .find_map(|d| files_in(d, &["safetensors", "gguf"]))
        .unwrap_or_default()
}

/// Whether `path` is a GGUF control vector (`general.architecture = controlvector`) rather
/// than a model; reads only the header.
#[must_use]
pub fn is_control_vector(path: &Path) -> bool {
    formats::gguf_architecture(path).is_some_and(|a| a == "controlvector")
}

/// The first shipped vector (sorted by name) whose name before the first `.` appears in the
/// model's path, e.g. `smollm2-135m-instruct.cheerful-gloomy.safetensors` for
/// `SmolLM2-135M-Instruct.Q4_1.gguf`, and `demo-model.refusal.safetensors` for
/// `assets/demo-model` and its `rounds/round-NN` checkpoints.
#[must_use]
pub fn find_shipped(model_path: &Path) -> Option<PathBuf> {
    let model_name = model_path.to_string_lossy().to_lowercase();
    let matches = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .is_some_and(|stem| !stem.is_empty() && model_name.contains(&stem.to_lowercase()))
    };
    vector_dirs()
        .iter()
        .filter_map(|d| files_in(d, &["safetensors"]))
        .find_map(|files| files.into_iter().find(matches))
}

/// The JSON sidecar beside a vector file (`X.json` for `X.safetensors`): provenance, and the
/// choices `select` and `monitor --scan-layers` record (`best_layer`, `scope`,
/// `monitor_layer`). `Null` when there is none or it is not JSON.
#[must_use]
pub fn read_sidecar(vector: &Path) -> serde_json::Value {
    std::fs::read_to_string(vector.with_extension("json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A layer index stored under `key` in the sidecar.
#[must_use]
pub fn sidecar_layer(vector: &Path, key: &str) -> Option<usize> {
    read_sidecar(vector)
        .get(key)?
        .as_u64()
        .and_then(|l| usize::try_from(l).ok())
}

/// Set `fields` in the sidecar (creating it), keeping everything else.
pub fn update_sidecar(vector: &Path, fields: &[(&str, serde_json::Value)]) -> Result<PathBuf> {
    let side = vector.with_extension("json");
    let mut json = if side.is_file() {
        let text = std::fs::read_to_string(&side).map_err(|e| Error::io(&side, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&side, format!("not valid JSON: {e}")))?
    } else {
        serde_json::json!({})
    };
    for (k, v) in fields {
        json[*k] = v.clone();
    }
    let text = serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    std::fs::write(&side, text).map_err(|e| Error::io(&side, e))?;
    Ok(side)
}
