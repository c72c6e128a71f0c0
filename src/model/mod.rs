//! Loading a Llama-family model (GGUF or HF safetensors), its tokenizer and chat template.

pub mod chat;
pub mod config;
pub mod forward;
mod gguf_tokenizer;
pub mod source;
pub(crate) mod weights;

use std::path::{Path, PathBuf};

use candle_core::Device;
use tokenizers::Tokenizer;

pub use chat::{ChatTemplate, Message};
pub use config::{Family, ModelConfig};
pub use forward::{ForwardArgs, ForwardOutput, KvCache, Transformer};
pub use source::ModelSource;
pub use weights::GgufWeights;

use crate::error::{Error, Result};

/// Facts about a loaded model, for display.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub path: PathBuf,
    /// `gguf` or `safetensors`.
    pub format: &'static str,
    pub family: Family,
    pub quantization: String,
    pub n_layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub context_len: usize,
}

/// A loaded model: the transformer, its tokenizer and chat template.
#[derive(Debug, Clone)]
pub struct Model {
    pub transformer: Transformer,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub info: ModelInfo,
    /// Tokens that end the assistant's turn (EOS and the template's end-of-turn token).
    pub stop_ids: Vec<u32>,
    /// BOS to prepend when the format asks for it and the rendered prompt lacks it.
    bos_to_add: Option<u32>,
}

/// Parse `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn parse_device(spec: &str) -> Result<Device> {
    let device = match spec {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0),
        "metal" => Device::new_metal(0),
        s => match s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => Device::new_cuda(n),
            None => {
                return Err(Error::invalid(
                    "--device",
                    format!("`{s}` (expected cpu, cuda, cuda:N or metal)"),
                ))
            }
        },
    };
    device.map_err(|e| {
        Error::invalid(
            "--device",
            format!("`{spec}` is not available: {e} (build with `--features cuda` or `--features metal`)"),
        )
    })
}

/// Common end-of-turn token strings across Llama-family chat formats.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "</s>",
    "<|end|>",
];

impl Model {
    /// Load from a `--model` value (path to `.gguf`, HF folder, or HF cache id).
    pub fn load(spec: &str, device: &Device) -> Result<Self> {
        Self::load_with(spec, device, false)
    }

    /// [`Model::load`]; with `dequantize`, GGUF weights are expanded to f32 at load, so batched
    /// work (extraction, sweeps) runs as dense matrix products: about 5x faster on CPU for
    /// SmolLM2 (BENCHMARKS.md), at four bytes per weight.
    pub fn load_with(spec: &str, device: &Device, dequantize: bool) -> Result<Self> {
        let mode = if dequantize {
            GgufWeights::Dense
        } else {
            GgufWeights::Quantized
        };
        Self::load_gguf_as(spec, device, mode)
    }

    /// [`Model::load`] with GGUF weights kept as `mode` says (HF folders are always dense).
    pub fn load_gguf_as(spec: &str, device: &Device, mode: GgufWeights) -> Result<Self> {
        match source::resolve(spec)? {
            ModelSource::Gguf(path) => Self::load_gguf_with(&path, device, mode),
            ModelSource::HfFolder(dir) => Self::load_hf(&dir, device),
        }
    }

    /// For interactive use (the app): GGUF models under 1 B parameters keep an f32 copy of
    /// their weights for prefill beside the quantized weights for decoding (about 3.5x faster
    /// prefill on CPU for SmolLM2, BENCHMARKS.md); larger ones stay quantized only.
    pub fn load_interactive(spec: &str, device: &Device) -> Result<Self> {
        Self::load_gguf_as(spec, device, GgufWeights::Auto)
    }

    /// Load a GGUF file.
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        Self::load_gguf_with(path, device, GgufWeights::Quantized)
    }

    fn load_gguf_with(path: &Path, device: &Device, mode: GgufWeights) -> Result<Self> {
        let (content, mut reader) = weights::read_gguf(path)?;
        let cfg = ModelConfig::from_gguf(path, &content)?;
        let tokenizer = gguf_tokenizer::from_gguf(path, &content)?;
        let w = weights::Weights::from_gguf(path, &content, &mut reader, &cfg, device, mode)?;
        let md = &content.metadata;
        let token_str = |key: &str| {
            md.get(key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let chat_template = md
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok())
            .map(|source| ChatTemplate {
                source: source.clone(),
                bos_token: token_str("tokenizer.ggml.bos_token_id"),
                eos_token: token_str("tokenizer.ggml.eos_token_id"),
            });
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos_to_add = if add_bos { cfg.bos_token_id } else { None };
        Self::assemble(
            path,
            "gguf",
            cfg,
            w,
            tokenizer,
            chat_template,
            bos_to_add,
            device,
        )
    }

    /// Load an HF folder (`config.json`, safetensors, `tokenizer.json`, `tokenizer_config.json`).
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::MissingFile {
                path: config_path,
                expected: "the model's config.json".into(),
            });
        }
        let mut cfg = ModelConfig::from_hf_json(&config_path)?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::MissingFile {
                path: tokenizer_path,
                expected: "the model's tokenizer.json".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            Error::bad_file(&tokenizer_path, format!("not a valid tokenizer.json: {e}"))
        })?;
        let files = source::safetensors_files(dir)?;
        let w = weights::Weights::from_safetensors(&files, &cfg, device)?;
        if let Some(gen_eos) = read_generation_eos(dir) {
            for id in gen_eos {
                if !cfg.eos_token_ids.contains(&id) {
                    cfg.eos_token_ids.push(id);
                }
            }
        }
        let chat_template = read_hf_template(dir)?;
        Self::assemble(
            dir,
            "safetensors",
            cfg,
            w,
            tokenizer,
            chat_template,
            None,
            device,
        )
    }

    /// The part of loading both formats share: facts for display, stop tokens, RoPE tables.
    fn assemble(
        path: &Path,
        format: &'static str,
        cfg: ModelConfig,
        w: weights::Weights,
        tokenizer: Tokenizer,
        chat_template: Option<ChatTemplate>,
        bos_to_add: Option<u32>,
        device: &Device,
    ) -> Result<Self> {
        let info = ModelInfo {
            path: path.to_path_buf(),
            format,
            family: cfg.family,
            quantization: w.quantization.clone(),
            n_layers: cfg.n_layers,
            hidden_size: cfg.hidden_size,
            vocab_size: cfg.vocab_size,
            context_len: cfg.context_len,
        };
        let stop_ids = stop_ids(&tokenizer, &cfg.eos_token_ids);
        Ok(Self {
            transformer: Transformer::new(cfg, w, device)?,
            tokenizer,
            chat_template,
            info,
            stop_ids,
            bos_to_add,
        })
    }

    #[must_use]
    pub fn cfg(&self) -> &ModelConfig {
        &self.transformer.cfg
    }

    /// Tokenize text as-is (special tokens in the text are parsed as special tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(bos) = self.bos_to_add {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Render a single user turn with the chat template (raw text when the model has none)
    /// and tokenize it.
    pub fn encode_chat(&self, user_prompt: &str) -> Result<Vec<u32>> {
        let text = self.render_chat(user_prompt)?;
        self.encode(&text)
    }

    /// [`Model::encode_chat`], plus how many of the ids come after the user's message: the
    /// chat template's post-instruction tokens (end of turn, assistant header). 0 without a
    /// template.
    pub fn encode_chat_split(&self, user_prompt: &str) -> Result<(Vec<u32>, usize)> {
        let text = self.render_chat(user_prompt)?;
        let Some(start) = text.rfind(user_prompt) else {
            return Ok((self.encode(&text)?, 0));
        };
        let end = start + user_prompt.len();
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let n_post = enc.get_offsets().iter().filter(|(s, _)| *s >= end).count();
        Ok((self.encode(&text)?, n_post))
    }

    /// A prompt's ids: through the chat template when `chat`, else the text as-is.
    pub fn encode_prompt(&self, prompt: &str, chat: bool) -> Result<Vec<u32>> {
        if chat {
            self.encode_chat(prompt)
        } else {
            self.encode(prompt)
        }
    }

    /// The text the model sees for one user turn.
    pub fn render_chat(&self, user_prompt: &str) -> Result<String> {
        match &self.chat_template {
            Some(t) => t.render(&[Message::user(user_prompt)], true),
            None => Ok(user_prompt.to_owned()),
        }
    }

    /// Decode ids to text, dropping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The string of each token (for token-level displays).
    #[must_use]
    pub fn token_strings(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                self.tokenizer
                    .decode(&[id], false)
                    .unwrap_or_else(|_| format!("<{id}>"))
            })
            .collect()
    }
}

fn stop_ids(tokenizer: &Tokenizer, eos: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = eos.to_vec();
    for t in END_OF_TURN {
        if let Some(id) = tokenizer.token_to_id(t) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}

fn read_generation_eos(dir: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("generation_config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    match json.get("eos_token_id")? {
        serde_json::Value::Number(n) => Some(vec![u32::try_from(n.as_u64()?).ok()?]),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(serde_json::Value::as_u64)
                .filter_map(|n| u32::try_from(n).ok())
                .collect(),
        ),
        _ => None,
    }
}

/// The chat template of an HF folder: `chat_template.jinja`, or `chat_template` in
/// `tokenizer_config.json` (a string, or a list of named templates: `default` is used).
fn read_hf_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let json: serde_json::Value = if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&cfg_path, format!("not valid JSON: {e}")))?
    } else {
        serde_json::Value::Null
    };
    let token = |key: &str| match json.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(obj) => obj
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_owned(),
        None => String::new(),
    };
    let jinja = dir.join("chat_template.jinja");
    let source = if jinja.is_file() {
        Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
    } else {
        match json.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
                .map(str::to_owned),
            _ => None,
        }
    };
    Ok(source.map(|source| ChatTemplate {
        source,
        bos_token: token("bos_token"),
        eos_token: token("eos_token"),
    }))
}
