//! The worker's vocabulary: commands the UI sends, events it gets back, and the results they
//! carry. Plain data, no tensors: everything here crosses the thread boundary.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::generate::{Sampling, StopReason};
use crate::hooks::Scope;
use crate::model::ModelInfo;
use crate::steer::monitor::MonitorReport;
use crate::steer::sweep::SweepResult;
use crate::vector::ExtractJob;

/// Identifies one request, so late events of a superseded job can be told apart.
pub type JobId = u64;

/// A shared flag the worker checks between tokens (and between prompts in long jobs).
pub type CancelFlag = Arc<AtomicBool>;

/// Which streams run beside the unsteered one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Unsteered | steered (the vector added at the layer).
    #[default]
    Add,
    /// Unsteered | ablated (the direction projected out everywhere).
    Ablate,
    /// Unsteered | steered | ablated.
    Both,
}

impl Mode {
    pub const ALL: [Self; 3] = [Self::Add, Self::Ablate, Self::Both];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Ablate => "ablate",
            Self::Both => "both",
        }
    }
}

/// What a stream does to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum StreamKind {
    Unsteered,
    Steered,
    Ablated,
}

/// One side-by-side generation, as the steering panel describes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GenerateParams {
    pub prompt: String,
    /// Apply the model's chat template to `prompt`.
    pub chat: bool,
    pub layer_idx: usize,
    pub strength: f64,
    pub mode: Mode,
    pub scope: Scope,
    pub sampling: Sampling,
    /// Stream `i` samples with `seed + i`.
    pub seed: u64,
    pub max_new_tokens: usize,
}

/// A refusal-rate sweep over strengths x layers on one prompt file.
#[derive(Debug, Clone)]
pub struct SweepParams {
    pub prompts: PathBuf,
    /// Use only the first N prompts.
    pub limit: usize,
    pub layers: Vec<usize>,
    pub strengths: Vec<f64>,
    pub scope: Scope,
    pub max_new_tokens: usize,
}

/// The checkpoint monitor: the vector's projection and the refusal rate per checkpoint.
#[derive(Debug, Clone)]
pub struct MonitorParams {
    /// Model specs, in training order.
    pub checkpoints: Vec<String>,
    pub prompts: PathBuf,
    pub limit: usize,
    pub layer_idx: usize,
    pub max_new_tokens: usize,
}

/// What the UI asks of the worker.
#[derive(Debug)]
pub enum Command {
    /// Load a model (a .gguf file, an HF folder or an HF cache id) on `device`.
    LoadModel { spec: String, device: String },
    /// Load a steering vector for the loaded model.
    LoadVector { path: PathBuf },
    /// Extract a vector from two prompt sets, write it, then load it.
    ExtractVector { job: JobId, extract: ExtractJob },
    /// Unsteered and steered (and ablated) streams of one prompt, with a trace.
    Generate {
        job: JobId,
        cancel: CancelFlag,
        params: GenerateParams,
    },
    Sweep {
        job: JobId,
        cancel: CancelFlag,
        params: SweepParams,
    },
    Monitor {
        job: JobId,
        cancel: CancelFlag,
        params: MonitorParams,
    },
    /// Panic on the worker thread (to test that the app survives it).
    #[doc(hidden)]
    Panic,
}

/// Where an error belongs in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The worker itself (a crash and restart).
    Worker,
    Model,
    Vector,
    Generate,
    Sweep,
    Monitor,
}

/// Facts about the loaded model for the top bar and the sliders.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// What was asked for (path or id), to reload after a worker restart.
    pub spec: String,
    pub device: String,
    pub info: ModelInfo,
    /// Mean L2 norm of `blocks.L.hook_resid_post` per layer over the example prompts' tokens
    /// but the first (the scale steering strengths are compared against).
    pub resid_norms: Vec<f32>,
    pub load_ms: f64,
}

/// Facts about the loaded vector.
#[derive(Debug, Clone)]
pub struct VectorFacts {
    pub path: PathBuf,
    /// Layers the file holds a direction for.
    pub layers: Vec<usize>,
    /// L2 norm of the direction per model layer (0 where the file has none).
    pub norms: Vec<f32>,
    /// The sidecar's `best_layer` and `scope`, when present.
    pub best_layer: Option<usize>,
    pub scope: Option<Scope>,
}

/// One finished stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamResult {
    pub label: String,
    pub kind: StreamKind,
    pub text: String,
    /// The refusal judge's verdict on `text`.
    pub refused: bool,
    /// The generated tokens, as text pieces.
    pub tokens: Vec<String>,
    pub stop: StopReason,
}

/// Per-layer summaries of one generation's trace, per stream (same order as the streams).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LayerPlots {
    pub n_layers: usize,
    /// The layer whose direction the projections use.
    pub direction_layer: usize,
    /// Mean over the stream's tokens (but the first, the attention sink) of the L2 norm of
    /// `hook_resid_post`, per layer.
    pub resid_norm: Vec<Vec<f32>>,
    /// Same for `hook_attn_out`.
    pub attn_norm: Vec<Vec<f32>>,
    /// Same for `hook_mlp_out`.
    pub mlp_norm: Vec<Vec<f32>>,
    /// Mean projection of `hook_attn_out` onto the unit direction, per layer: what attention
    /// writes along it.
    pub attn_contrib: Vec<Vec<f32>>,
    /// Same for `hook_mlp_out`.
    pub mlp_contrib: Vec<Vec<f32>>,
    /// Projection of `hook_resid_post` onto the unit direction, `[layer][token]` over the
    /// prompt and the stream's generated tokens.
    pub resid_proj: Vec<Vec<Vec<f32>>>,
}

/// A finished side-by-side generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generation {
    pub params: GenerateParams,
    /// The prompt as the model saw it, as token pieces.
    pub prompt_tokens: Vec<String>,
    pub streams: Vec<StreamResult>,
    pub plots: LayerPlots,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// What the worker reports.
#[derive(Debug)]
pub enum Event {
    /// A long job advanced: `stage` in words, `fraction` in 0..=1 when known.
    Progress {
        stage: String,
        fraction: Option<f32>,
    },
    ModelLoaded(Box<ModelFacts>),
    VectorLoaded(Box<VectorFacts>),
    /// A vector was extracted and written (then loaded: `VectorLoaded` follows).
    VectorExtracted {
        job: JobId,
        path: PathBuf,
    },
    /// One new token of stream `stream_idx`.
    Token {
        job: JobId,
        stream_idx: usize,
        text: String,
    },
    Generated {
        job: JobId,
        generation: Box<Generation>,
    },
    SweepDone {
        job: JobId,
        result: Box<SweepResult>,
    },
    MonitorDone {
        job: JobId,
        report: Box<MonitorReport>,
        checkpoints: Vec<String>,
    },
    /// A job stopped because it was cancelled (or superseded before it started).
    Cancelled {
        job: JobId,
    },
    Failed {
        job: Option<JobId>,
        site: Site,
        message: String,
    },
    /// The worker thread panicked and stopped; the app restarts it.
    Panicked {
        message: String,
    },
}
