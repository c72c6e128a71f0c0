//! Model hyper-parameters, read from an HF `config.json` or from GGUF metadata.

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::error::{Error, Result};

/// Architectures the forward implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama-2, Llama-3, SmolLM and other `LlamaForCausalLM` models.
    Llama,
    /// Mistral (a Llama with its own name; sliding-window attention is not used).
    Mistral,
    /// Qwen2: biases on the q/k/v projections.
    Qwen2,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
        })
    }
}

impl Family {
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2";

    fn parse(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "mistral" => Some(Self::Mistral),
            "qwen2" => Some(Self::Qwen2),
            _ => None,
        }
    }
}

/// Llama-3.1 style RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: usize,
}

/// The positions a RoPE table is precomputed for, at most. Longer contexts are clamped to this
/// (a 128k-token table would cost 64 MB per model for no use on a desktop lab).
pub const MAX_ROPE_POSITIONS: usize = 32_768;

/// Hyper-parameters shared by every supported architecture and weight format.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    #[serde(skip)]
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Interleaved RoPE pairs (2i, 2i+1), as GGUF llama files store q/k; HF layout pairs
    /// (i, i + d/2).
    pub rope_interleaved: bool,
    /// Usable context, in tokens.
    pub context_len: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

#[derive(serde::Deserialize)]
struct RopeScalingJson {
    #[serde(default, alias = "type")]
    rope_type: Option<String>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(serde::Deserialize)]
struct HfConfigJson {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    vocab_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f32>,
    rope_scaling: Option<RopeScalingJson>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
}

impl ModelConfig {
    /// Parse an HF `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json: HfConfigJson = serde_json::from_str(&text).map_err(|e| {
            Error::bad_file(
                path,
                format!("not a valid model config.json ({e}); expected hidden_size, num_hidden_layers, ..."),
            )
        })?;
        let model_type = json.model_type.clone().unwrap_or_else(|| "llama".into());
        let family = Family::parse(&model_type).ok_or_else(|| Error::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: model_type.clone(),
            expected: Family::SUPPORTED.into(),
        })?;
        let rope_scaling = match json.rope_scaling {
            Some(rs) if rs.rope_type.as_deref() == Some("llama3") => Some(Llama3RopeScaling {
                factor: rs.factor.unwrap_or(1.0),
                low_freq_factor: rs.low_freq_factor.unwrap_or(1.0),
                high_freq_factor: rs.high_freq_factor.unwrap_or(4.0),
                original_max_position_embeddings: rs
                    .original_max_position_embeddings
                    .unwrap_or(8192),
            }),
            Some(rs) if rs.rope_type.as_deref().is_some_and(|t| t != "default") => {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "rope_scaling type `{}` is not supported (expected llama3 or none)",
                        rs.rope_type.unwrap_or_default()
                    ),
                ))
            }
            _ => None,
        };
        let n_heads = json.num_attention_heads;
        let cfg = Self {
            family,
            hidden_size: json.hidden_size,
            intermediate_size: json.intermediate_size,
            vocab_size: json.vocab_size,
            n_layers: json.num_hidden_layers,
            n_heads,
            n_kv_heads: json.num_key_value_heads.unwrap_or(n_heads),
            head_dim: json.head_dim.unwrap_or(json.hidden_size / n_heads.max(1)),
            rms_norm_eps: json.rms_norm_eps,
            rope_theta: json.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rope_interleaved: false,
            context_len: json
                .max_position_embeddings
                .unwrap_or(4096)
                .min(MAX_ROPE_POSITIONS),
            tie_word_embeddings: json.tie_word_embeddings.unwrap_or(false),
            bos_token_id: json.bos_token_id,
            eos_token_ids: match json.eos_token_id {
                None => vec![],
                Some(OneOrMany::One(id)) => vec![id],
                Some(OneOrMany::Many(ids)) => ids,
            },
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Read hyper-parameters from GGUF metadata (`general.architecture = llama`).
    pub fn from_gguf(path: &Path, content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let arch = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            return Err(Error::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: arch,
                expected: "llama (GGUF)".into(),
            });
        }
        let get_u32 = |key: &str| -> Result<usize> {
            md.get(key)
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
                .ok_or_else(|| {
                    Error::bad_file(
                        path,
                        format!("GGUF metadata lacks `{key}` (expected a u32)"),
                    )
                })
        };
        let hidden_size = get_u32("llama.embedding_length")?;
        let n_heads = get_u32("llama.attention.head_count")?;
        let n_kv_heads = get_u32("llama.attention.head_count_kv").unwrap_or(n_heads);
        let head_dim =
            get_u32("llama.rope.dimension_count").unwrap_or(hidden_size / n_heads.max(1));
        let rms_norm_eps = md
            .get("llama.attention.layer_norm_rms_epsilon")
            .and_then(|v| v.to_f32().ok())
            .map_or(1e-5, f64::from);
        let rope_theta = md
            .get("llama.rope.freq_base")
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(10_000.0);
        let embd = content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| {
                Error::bad_file(
                    path,
                    "GGUF has no tensor `token_embd.weight` (expected a llama model)",
                )
            })?;
        let vocab_size = embd.shape.dims().first().copied().unwrap_or(0);
        let intermediate_size = get_u32("llama.feed_forward_length")?;
        let u32_key = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let cfg = Self {
            family: Family::Llama,
            hidden_size,
            intermediate_size,
            vocab_size,
            n_layers: get_u32("llama.block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            rope_scaling: None,
            rope_interleaved: true,
            context_len: get_u32("llama.context_length")
                .unwrap_or(4096)
                .min(MAX_ROPE_POSITIONS),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            bos_token_id: u32_key("tokenizer.ggml.bos_token_id"),
            eos_token_ids: u32_key("tokenizer.ggml.eos_token_id").into_iter().collect(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::bad_file(path, msg));
        if self.n_layers == 0 || self.hidden_size == 0 || self.n_heads == 0 || self.vocab_size == 0
        {
            return bad(format!(
                "model has {} layers, hidden size {}, {} heads, vocabulary {} (expected all > 0)",
                self.n_layers, self.hidden_size, self.n_heads, self.vocab_size
            ));
        }
        if self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return bad(format!(
                "head dimension {} is odd (RoPE needs it even)",
                self.head_dim
            ));
        }
        Ok(())
    }

    /// Check a layer index against the model.
    pub fn check_layer(&self, layer_idx: usize) -> Result<()> {
        if layer_idx < self.n_layers {
            Ok(())
        } else {
            Err(Error::LayerOutOfRange {
                layer_idx,
                n_layers: self.n_layers,
            })
        }
    }

    /// RoPE inverse frequencies, one per rotated pair, with Llama-3.1 scaling when configured.
    pub(crate) fn rope_inv_freq(&self) -> Vec<f32> {
        let inv: Vec<f32> = (0..self.head_dim)
            .step_by(2)
            .map(|i| 1f32 / self.rope_theta.powf(i as f32 / self.head_dim as f32))
            .collect();
        let Some(rs) = &self.rope_scaling else {
            return inv;
        };
        let low_freq_wavelen = rs.original_max_position_embeddings as f32 / rs.low_freq_factor;
        let high_freq_wavelen = rs.original_max_position_embeddings as f32 / rs.high_freq_factor;
        inv.into_iter()
            .map(|freq| {
                let wavelen = 2. * std::f32::consts::PI / freq;
                if wavelen < high_freq_wavelen {
                    freq
                } else if wavelen > low_freq_wavelen {
                    freq / rs.factor
                } else {
                    let smooth = (rs.original_max_position_embeddings as f32 / wavelen
                        - rs.low_freq_factor)
                        / (rs.high_freq_factor - rs.low_freq_factor);
                    (1. - smooth) * freq / rs.factor + smooth * freq
                }
            })
            .collect()
    }
}
