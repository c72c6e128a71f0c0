//! Where a model's files are: a `.gguf` file, an HF folder, or an HF cache repo id (resolved
//! offline: steerscope never touches the network).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A model's files, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A single quantized GGUF file.
    Gguf(PathBuf),
    /// An HF folder: `config.json`, safetensors, `tokenizer.json`, `tokenizer_config.json`.
    HfFolder(PathBuf),
}

impl ModelSource {
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::Gguf(p) | Self::HfFolder(p) => p,
        }
    }
}

/// The HF hub cache folder: `$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`.
#[must_use]
pub fn hf_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

fn looks_like_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// Resolve a `--model` value: a path to a `.gguf` file or an HF folder, or a repo id in the HF
/// cache (`meta-llama/Meta-Llama-3-8B-Instruct`).
pub fn resolve(spec: &str) -> Result<ModelSource> {
    resolve_in(spec, &hf_cache_dir())
}

/// [`resolve`] with an explicit HF cache folder.
pub fn resolve_in(spec: &str, cache_dir: &Path) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(ModelSource::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        return folder(path);
    }
    if looks_like_repo_id(spec) {
        let repo = cache_dir.join(format!("models--{}", spec.replace('/', "--")));
        let snapshots = repo.join("snapshots");
        let by_ref = std::fs::read_to_string(repo.join("refs").join("main"))
            .ok()
            .map(|hash| snapshots.join(hash.trim()));
        let snapshot = match by_ref.filter(|p| p.is_dir()) {
            Some(p) => Some(p),
            None => newest_subdir(&snapshots),
        };
        return match snapshot {
            Some(dir) => folder(&dir),
            None => Err(Error::NotInCache {
                id: spec.into(),
                cache_dir: cache_dir.to_path_buf(),
            }),
        };
    }
    Err(Error::MissingFile {
        path: path.to_path_buf(),
        expected: "a .gguf file, an HF model folder, or an HF cache repo id like org/name".into(),
    })
}

fn newest_subdir(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(std::result::Result::ok)
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn folder(dir: &Path) -> Result<ModelSource> {
    if dir.join("config.json").is_file() {
        return Ok(ModelSource::HfFolder(dir.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelSource::Gguf(one.clone())),
        [] => Err(Error::MissingFile {
            path: dir.join("config.json"),
            expected: "an HF model folder has config.json, model.safetensors and tokenizer.json"
                .into(),
        }),
        _ => Err(Error::invalid(
            "--model",
            format!(
                "{} holds {} .gguf files; name one",
                dir.display(),
                ggufs.len()
            ),
        )),
    }
}

/// The safetensors files of an HF folder: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if !index.is_file() {
        return Err(Error::MissingFile {
            path: single,
            expected: "model.safetensors or model.safetensors.index.json".into(),
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&index, format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::bad_file(&index, "no `weight_map` object"))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for shard in map.values().filter_map(|v| v.as_str()) {
        let p = dir.join(shard);
        if !files.contains(&p) {
            if !p.is_file() {
                return Err(Error::MissingFile {
                    path: p,
                    expected: format!("a shard named in {}", index.display()),
                });
            }
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_resolve_in_the_cache_layout() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--acme--tiny-llama");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(
            resolve_in("acme/tiny-llama", cache.path()).unwrap(),
            ModelSource::HfFolder(snap)
        );
    }

    #[test]
    fn missing_repo_id_names_the_id_and_cache() {
        let cache = tempfile::tempdir().unwrap();
        let err = resolve_in("meta-llama/Meta-Llama-3-8B-Instruct", cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("meta-llama/Meta-Llama-3-8B-Instruct"), "{err}");
        assert!(err.contains(&cache.path().display().to_string()), "{err}");
        assert!(err.contains("never downloads"), "{err}");
    }

    #[test]
    fn missing_path_is_a_clear_error() {
        let err = resolve_in("/no/such/model.gguf", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/no/such/model.gguf: file not found"),
            "{err}"
        );
    }
}
