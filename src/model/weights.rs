//! Weights of a Llama-family model, dense (safetensors) or quantized (GGUF), behind one small
//! enum so the forward is written once.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, RmsNorm, VarBuilder};

use super::config::ModelConfig;
use crate::error::{Error, Result};

/// A projection `y = x W^T (+ b)`.
#[derive(Debug, Clone)]
pub(crate) enum Proj {
    Dense(Linear),
    Quant {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
    /// Both forms of one GGUF weight: dense for passes over many rows (prefill, batched
    /// extraction), where f32 matrix products are several times faster on CPU; quantized for
    /// decoding a few rows, where reading fewer bytes wins.
    Hybrid {
        dense: Linear,
        quant: QMatMul,
    },
}

/// How GGUF weights are kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GgufWeights {
    /// Quantized as stored (the least memory).
    #[default]
    Quantized,
    /// Expanded to f32 at load (four bytes per weight).
    Dense,
    /// Quantized for decoding plus an f32 copy for multi-row passes.
    Hybrid,
    /// [`GgufWeights::Hybrid`] for models under 1 B parameters, else quantized.
    Auto,
}

impl GgufWeights {
    /// `Auto` made concrete for a file whose tensors hold `n_params` values.
    #[must_use]
    pub fn resolve(self, n_params: usize) -> Self {
        match self {
            Self::Auto if n_params < 1_000_000_000 => Self::Hybrid,
            Self::Auto => Self::Quantized,
            other => other,
        }
    }
}

/// Rows (batch x tokens) from which a hybrid weight uses its dense copy.
const HYBRID_DENSE_ROWS: usize = 8;

impl Proj {
    /// # Shapes
    /// `x`: `[batch, seq, in]` -> `[batch, seq, out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(linear) => linear.forward(x),
            Self::Hybrid { dense, quant } => {
                let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
                if rows >= HYBRID_DENSE_ROWS {
                    dense.forward(x)
                } else {
                    quant.forward(x)
                }
            }
            Self::Quant { weight, bias } => {
                let y = weight.forward(x)?;
                match bias {
                    None => Ok(y),
                    Some(b) => y.broadcast_add(b),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BlockWeights {
    pub attn_norm: RmsNorm,
    pub q: Proj,
    pub k: Proj,
    pub v: Proj,
    pub o: Proj,
    pub mlp_norm: RmsNorm,
    pub gate: Proj,
    pub up: Proj,
    pub down: Proj,
}

#[derive(Debug, Clone)]
pub(crate) struct Weights {
    /// `[vocab, hidden]`, f32.
    pub embed: Tensor,
    pub blocks: Vec<BlockWeights>,
    pub final_norm: RmsNorm,
    pub lm_head: Proj,
    /// A short description of the weight storage, e.g. `Q4_1` or `bf16 -> f32`.
    pub quantization: String,
}

/// The GGUF tensor types the loader accepts.
const GGUF_TYPES: &[GgmlDType] = &[
    GgmlDType::F32,
    GgmlDType::F16,
    GgmlDType::BF16,
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_0,
    GgmlDType::Q2K,
    GgmlDType::Q3K,
    GgmlDType::Q4K,
    GgmlDType::Q5K,
    GgmlDType::Q6K,
];

fn gguf_types_list() -> String {
    GGUF_TYPES
        .iter()
        .map(|t| format!("{t:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Open and parse a GGUF header, with errors that name the file.
pub(crate) fn read_gguf(path: &Path) -> Result<(gguf_file::Content, BufReader<File>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader).map_err(|e| {
        let msg = e.to_string();
        if let Some(id) = msg.strip_prefix("unknown dtype for tensor ") {
            Error::UnsupportedQuantization {
                path: path.to_path_buf(),
                tensor: "(header)".into(),
                dtype: format!("id {id}"),
                expected: gguf_types_list(),
            }
        } else {
            Error::bad_file(path, format!("not a readable GGUF file: {msg}"))
        }
    })?;
    // Check the tensor data is all there before reading any of it.
    for (name, info) in &content.tensor_infos {
        let bytes =
            info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
        let end = content.tensor_data_offset + info.offset + bytes as u64;
        if end > len {
            return Err(Error::bad_file(
                path,
                format!("GGUF is truncated: tensor `{name}` ends at byte {end}, the file has {len} bytes"),
            ));
        }
    }
    Ok((content, reader))
}

impl Weights {
    /// Load quantized weights from a GGUF file (llama tensor names).
    pub(crate) fn from_gguf(
        path: &Path,
        content: &gguf_file::Content,
        reader: &mut BufReader<File>,
        cfg: &ModelConfig,
        device: &Device,
        mode: GgufWeights,
    ) -> Result<Self> {
        let n_params: usize = content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count())
            .sum();
        let mode = mode.resolve(n_params);
        let mut qtypes: HashMap<String, usize> = HashMap::new();
        let mut get = |name: &str| -> Result<QTensor> {
            let info = content.tensor_infos.get(name).ok_or_else(|| {
                Error::bad_file(
                    path,
                    format!("GGUF lacks tensor `{name}` (expected a llama model)"),
                )
            })?;
            if !GGUF_TYPES.contains(&info.ggml_dtype) {
                return Err(Error::UnsupportedQuantization {
                    path: path.to_path_buf(),
                    tensor: name.into(),
                    dtype: format!("{:?}", info.ggml_dtype),
                    expected: gguf_types_list(),
                });
            }
            *qtypes.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
            content
                .tensor(reader, name, device)
                .map_err(|e| Error::bad_file(path, format!("reading tensor `{name}`: {e}")))
        };
        let norm = |q: QTensor, eps: f64| -> Result<RmsNorm> {
            Ok(RmsNorm::new(q.dequantize(device)?, eps))
        };
        let quant = |q: QTensor| -> Result<Proj> {
            Ok(match mode {
                GgufWeights::Dense => Proj::Dense(Linear::new(q.dequantize(device)?, None)),
                GgufWeights::Quantized | GgufWeights::Auto => Proj::Quant {
                    weight: QMatMul::from_qtensor(q)?,
                    bias: None,
                },
                GgufWeights::Hybrid => Proj::Hybrid {
                    dense: Linear::new(q.dequantize(device)?, None),
                    quant: QMatMul::from_qtensor(q)?,
                },
            })
        };
        let eps = cfg.rms_norm_eps;
        let embed_q = get("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let final_norm = norm(get("output_norm.weight")?, eps)?;
        let lm_head = if content.tensor_infos.contains_key("output.weight") {
            quant(get("output.weight")?)?
        } else {
            quant(embed_q)?
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for layer_idx in 0..cfg.n_layers {
            let p = format!("blk.{layer_idx}");
            blocks.push(BlockWeights {
                attn_norm: norm(get(&format!("{p}.attn_norm.weight"))?, eps)?,
                q: quant(get(&format!("{p}.attn_q.weight"))?)?,
                k: quant(get(&format!("{p}.attn_k.weight"))?)?,
                v: quant(get(&format!("{p}.attn_v.weight"))?)?,
                o: quant(get(&format!("{p}.attn_output.weight"))?)?,
                mlp_norm: norm(get(&format!("{p}.ffn_norm.weight"))?, eps)?,
                gate: quant(get(&format!("{p}.ffn_gate.weight"))?)?,
                up: quant(get(&format!("{p}.ffn_up.weight"))?)?,
                down: quant(get(&format!("{p}.ffn_down.weight"))?)?,
            });
        }
        let weights = Self {
            embed,
            blocks,
            final_norm,
            lm_head,
            quantization: match mode {
                GgufWeights::Quantized | GgufWeights::Auto => describe_mix(&qtypes),
                GgufWeights::Dense => format!("{} -> f32", describe_mix(&qtypes)),
                GgufWeights::Hybrid => format!("{} + f32 prefill copy", describe_mix(&qtypes)),
            },
        };
        weights.check_shapes(path, cfg)?;
        Ok(weights)
    }

    /// Load dense weights from HF safetensors files (one or several shards), computing in f32.
    pub(crate) fn from_safetensors(
        files: &[PathBuf],
        cfg: &ModelConfig,
        device: &Device,
    ) -> Result<Self> {
        let first = files.first().cloned().unwrap_or_default();
        let mut stored = None;
        for file in files {
            let bytes = std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
            if bytes.len() < 8 {
                return Err(Error::bad_file(
                    file,
                    "safetensors file is truncated (shorter than its 8-byte header length)",
                ));
            }
            let st = mmap_safetensors(file)?;
            if stored.is_none() {
                stored = st
                    .tensors()
                    .first()
                    .map(|(_, view)| format!("{:?}", view.dtype()).to_lowercase());
            }
        }
        let vb = mmap_varbuilder(files, device)?;
        let quantization = match stored {
            Some(s) if s != "f32" => format!("{s} -> f32"),
            _ => "f32".into(),
        };
        Self::from_varbuilder(&vb, cfg, &first, quantization)
    }

    /// Build the weights from HF tensor names in a `VarBuilder` (memory-mapped files, or a
    /// `VarMap` of trainable variables). `path` names the source in errors.
    pub(crate) fn from_varbuilder(
        vb: &VarBuilder,
        cfg: &ModelConfig,
        path: &Path,
        quantization: String,
    ) -> Result<Self> {
        let first = path;
        let h = cfg.hidden_size;
        let q_out = cfg.n_heads * cfg.head_dim;
        let kv_out = cfg.n_kv_heads * cfg.head_dim;
        let qkv_bias = cfg.family == super::config::Family::Qwen2;
        let where_ = |e: candle_core::Error| {
            Error::bad_file(
                first,
                format!("{e} (expected HF Llama-family tensor names and shapes)"),
            )
        };
        let linear = |i: usize, o: usize, vb: VarBuilder, bias: bool| -> Result<Proj> {
            let l = if bias {
                candle_nn::linear(i, o, vb)
            } else {
                candle_nn::linear_no_bias(i, o, vb)
            };
            l.map(Proj::Dense).map_err(where_)
        };
        let norm = |vb: VarBuilder| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                vb.get(h, "weight").map_err(where_)?,
                cfg.rms_norm_eps,
            ))
        };
        let embed = vb
            .pp("model.embed_tokens")
            .get((cfg.vocab_size, h), "weight")
            .map_err(where_)?;
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for layer_idx in 0..cfg.n_layers {
            let b = vb.pp(format!("model.layers.{layer_idx}"));
            let a = b.pp("self_attn");
            let m = b.pp("mlp");
            blocks.push(BlockWeights {
                attn_norm: norm(b.pp("input_layernorm"))?,
                q: linear(h, q_out, a.pp("q_proj"), qkv_bias)?,
                k: linear(h, kv_out, a.pp("k_proj"), qkv_bias)?,
                v: linear(h, kv_out, a.pp("v_proj"), qkv_bias)?,
                o: linear(q_out, h, a.pp("o_proj"), false)?,
                mlp_norm: norm(b.pp("post_attention_layernorm"))?,
                gate: linear(h, cfg.intermediate_size, m.pp("gate_proj"), false)?,
                up: linear(h, cfg.intermediate_size, m.pp("up_proj"), false)?,
                down: linear(cfg.intermediate_size, h, m.pp("down_proj"), false)?,
            });
        }
        let final_norm = norm(vb.pp("model.norm"))?;
        let lm_head = if !cfg.tie_word_embeddings && vb.contains_tensor("lm_head.weight") {
            linear(h, cfg.vocab_size, vb.pp("lm_head"), false)?
        } else {
            Proj::Dense(Linear::new(embed.clone(), None))
        };
        Ok(Self {
            embed,
            blocks,
            final_norm,
            lm_head,
            quantization,
        })
    }

    fn check_shapes(&self, path: &Path, cfg: &ModelConfig) -> Result<()> {
        let (vocab, hidden) = self.embed.dims2()?;
        if hidden != cfg.hidden_size || vocab != cfg.vocab_size {
            return Err(Error::bad_file(
                path,
                format!(
                    "token embedding is {vocab}x{hidden}, expected {}x{} from the metadata",
                    cfg.vocab_size, cfg.hidden_size
                ),
            ));
        }
        Ok(())
    }
}

fn describe_mix(counts: &HashMap<String, usize>) -> String {
    let mut v: Vec<_> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .map(|(k, _)| k.clone())
        .collect::<Vec<_>>()
        .join("+")
}

// Memory-mapping is how candle (and every Rust LLM runtime) reads multi-gigabyte safetensors
// without copying them; the one unsafe rule is that the file must not change while mapped.
#[allow(unsafe_code)]
fn mmap_varbuilder(files: &[PathBuf], device: &Device) -> Result<VarBuilder<'static>> {
    // SAFETY: the model files are opened read-only and steerscope never writes them while loaded.
    unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, device) }.map_err(|e| {
        Error::bad_file(
            files.first().cloned().unwrap_or_default(),
            format!("not a readable safetensors file: {e}"),
        )
    })
}

#[allow(unsafe_code)]
fn mmap_safetensors(file: &Path) -> Result<candle_core::safetensors::MmapedSafetensors> {
    // SAFETY: as above, read-only and not modified while mapped.
    unsafe { candle_core::safetensors::MmapedSafetensors::new(file) }
        .map_err(|e| Error::bad_file(file, format!("not a readable safetensors file: {e}")))
}
