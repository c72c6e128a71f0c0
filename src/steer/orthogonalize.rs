//! Weight orthogonalization (Arditi et al. 2024, "abliteration"): a new checkpoint whose
//! weights can no longer write a direction into the residual stream. Every matrix that writes
//! to the residual (the token embedding, each attention output projection and each MLP down
//! projection) is projected onto the complement of the unit direction `r`:
//! `W_out <- W_out - r r^T W_out`, `E <- E - E r r^T`. This equals directional ablation at
//! inference (`Steering::ablate`) with no hooks. The unembedding is left as it was (a tied
//! embedding is untied first).

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// Which tensors write to the residual stream, by name, and how they are laid out.
enum Writes {
    /// `[out = hidden, in]`: project the output (rows' space).
    Output,
    /// `[vocab, hidden]`: project each row.
    Embedding,
}

fn hf_role(name: &str) -> Option<Writes> {
    if name == "model.embed_tokens.weight" {
        Some(Writes::Embedding)
    } else if name.ends_with("self_attn.o_proj.weight") || name.ends_with("mlp.down_proj.weight") {
        Some(Writes::Output)
    } else {
        None
    }
}

fn gguf_role(name: &str) -> Option<Writes> {
    if name == "token_embd.weight" {
        Some(Writes::Embedding)
    } else if name.ends_with(".attn_output.weight") || name.ends_with(".ffn_down.weight") {
        Some(Writes::Output)
    } else {
        None
    }
}

/// # Shapes
/// `w`: `[hidden, in]` (Output) or `[vocab, hidden]` (Embedding); `r`: unit `[hidden]`.
fn project(w: &Tensor, r: &Tensor, role: &Writes) -> Result<Tensor> {
    let w = w.to_dtype(DType::F32)?;
    let h = r.elem_count();
    Ok(match role {
        Writes::Output => {
            let col = r.reshape((h, 1))?;
            let rt_w = col.t()?.matmul(&w)?; // [1, in]
            (&w - col.matmul(&rt_w)?)?
        }
        Writes::Embedding => {
            let col = r.reshape((h, 1))?;
            let e_r = w.matmul(&col)?; // [vocab, 1]
            (&w - e_r.matmul(&col.t()?)?)?
        }
    })
}

/// Write an orthogonalized copy of the HF folder `src` into `dst` (f32 weights, untied).
pub fn orthogonalize_hf(src: &Path, dst: &Path, direction: &Tensor) -> Result<usize> {
    let r = crate::model::forward::unit(&direction.to_device(&Device::Cpu)?)?;
    let files = crate::model::source::safetensors_files(src)?;
    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut edited = 0;
    let mut all = std::collections::HashMap::new();
    for f in &files {
        let tensors = candle_core::safetensors::load(f, &Device::Cpu)
            .map_err(|e| Error::bad_file(f, format!("not a readable safetensors file: {e}")))?;
        all.extend(tensors);
    }
    if !all.contains_key("lm_head.weight") {
        if let Some(e) = all.get("model.embed_tokens.weight") {
            all.insert("lm_head.weight".to_owned(), e.to_dtype(DType::F32)?);
        }
    }
    let mut out = std::collections::HashMap::with_capacity(all.len());
    for (name, t) in all {
        let t = match hf_role(&name) {
            Some(role) => {
                let axis = match role {
                    Writes::Output => 0,
                    Writes::Embedding => 1,
                };
                let width = t.dims().get(axis).copied().unwrap_or(0);
                if width != r.elem_count() {
                    return Err(Error::WidthMismatch {
                        what: format!("direction (tensor `{name}` is {:?})", t.dims()),
                        found: r.elem_count(),
                        expected: width,
                    });
                }
                edited += 1;
                project(&t, &r, &role)?
            }
            None => t.to_dtype(DType::F32)?,
        };
        out.insert(name, t);
    }
    let weights = dst.join("model.safetensors");
    candle_core::safetensors::save(&out, &weights)
        .map_err(|e| Error::bad_file(&weights, format!("cannot write: {e}")))?;
    // Config (untied) and the tokenizer files, copied.
    let cfg_path = src.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_file(&cfg_path, format!("not valid JSON: {e}")))?;
    cfg["tie_word_embeddings"] = serde_json::Value::Bool(false);
    cfg["torch_dtype"] = serde_json::Value::String("float32".into());
    let out_cfg = dst.join("config.json");
    std::fs::write(
        &out_cfg,
        serde_json::to_string_pretty(&cfg).unwrap_or_default(),
    )
    .map_err(|e| Error::io(&out_cfg, e))?;
    for name in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "chat_template.jinja",
        "special_tokens_map.json",
    ] {
        let from = src.join(name);
        if from.is_file() {
            std::fs::copy(&from, dst.join(name)).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(edited)
}

/// Write an orthogonalized copy of the GGUF file `src` to `dst`: edited tensors re-quantized
/// to `Q8_0` (F32 where a row does not fit its blocks), everything else copied as it was.
pub fn orthogonalize_gguf(src: &Path, dst: &Path, direction: &Tensor) -> Result<usize> {
    let r = crate::model::forward::unit(&direction.to_device(&Device::Cpu)?)?;
    let (content, mut reader) = crate::model::weights::read_gguf(src)?;
    let dev = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(content.tensor_infos.len() + 1);
    let mut edited = 0;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let q = content
            .tensor(&mut reader, name, &dev)
            .map_err(|e| Error::bad_file(src, format!("reading tensor `{name}`: {e}")))?;
        if name == "token_embd.weight" && !content.tensor_infos.contains_key("output.weight") {
            // Untie: the unembedding keeps the original weights.
            let copy = content
                .tensor(&mut reader, name, &dev)
                .map_err(|e| Error::bad_file(src, format!("reading tensor `{name}`: {e}")))?;
            tensors.push(("output.weight".to_owned(), copy));
        }
        match gguf_role(name) {
            Some(role) => {
                let w = project(&q.dequantize(&dev)?, &r, &role)?;
                let cols = w.dims().last().copied().unwrap_or(0);
                let dtype = if cols % GgmlDType::Q8_0.block_size() == 0 {
                    GgmlDType::Q8_0
                } else {
                    GgmlDType::F32
                };
                tensors.push((name.clone(), QTensor::quantize(&w, dtype)?));
                edited += 1;
            }
            None => tensors.push((name.clone(), q)),
        }
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut file = std::fs::File::create(dst).map_err(|e| Error::io(dst, e))?;
    gguf_file::write(&mut file, &metadata, &refs)
        .map_err(|e| Error::bad_file(dst, format!("cannot write: {e}")))?;
    Ok(edited)
}
