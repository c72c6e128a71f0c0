//! The library's one error type. Every message names the file or value at fault and what was
//! expected, so the CLI can print it as one line and the GUI can show it where the user looks.

use std::path::PathBuf;

/// Errors raised by steerscope's library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("{path}: file not found ({expected})")]
    MissingFile { path: PathBuf, expected: String },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("{path}: unsupported architecture `{found}` (expected one of: {expected})")]
    UnsupportedArchitecture {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error(
        "{path}: tensor `{tensor}` has unsupported type {dtype} (expected one of: {expected})"
    )]
    UnsupportedQuantization {
        path: PathBuf,
        tensor: String,
        dtype: String,
        expected: String,
    },

    #[error("{what} has width {found}, expected the model's hidden size {expected}")]
    WidthMismatch {
        what: String,
        found: usize,
        expected: usize,
    },

    #[error("layer {layer_idx} is out of range: this model has {n_layers} layers (0..={max})", max = n_layers.saturating_sub(1))]
    LayerOutOfRange { layer_idx: usize, n_layers: usize },

    #[error("prompt is {n_tokens} tokens (plus {max_new_tokens} to generate), longer than the model's context of {context_len} tokens")]
    PromptTooLong {
        n_tokens: usize,
        max_new_tokens: usize,
        context_len: usize,
    },

    #[error("{path}: not valid UTF-8 text (expected a UTF-8 prompt file)")]
    NotUtf8 { path: PathBuf },

    #[error("unknown hook point `{name}` (expected e.g. `blocks.3.hook_resid_post`, `blocks.0.hook_attn_out`, `ln_final.hook_normalized`)")]
    UnknownHook { name: String },

    #[error("model `{id}` is not in the Hugging Face cache at {cache_dir} (steerscope never downloads; expected a local folder, a .gguf file, or a cached repo id)")]
    NotInCache { id: String, cache_dir: PathBuf },

    #[error("invalid value for {name}: {message}")]
    InvalidValue { name: String, message: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error("cancelled")]
    Cancelled,

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidValue {
            name: name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
