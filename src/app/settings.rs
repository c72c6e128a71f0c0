//! What the user set, persisted across restarts by eframe (DESIGN.md rule 4): plain serde data,
//! apart from the runtime handles.

use std::path::PathBuf;

use crate::generate::Sampling;
use crate::hooks::Scope;
use crate::worker::{GenerateParams, Mode, EXAMPLE_PROMPTS};

/// The plot shown in the bottom panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum PlotTab {
    #[default]
    Norms,
    Contributions,
    Projection,
    Sweep,
    Monitor,
}

impl PlotTab {
    pub const ALL: [Self; 5] = [
        Self::Norms,
        Self::Contributions,
        Self::Projection,
        Self::Sweep,
        Self::Monitor,
    ];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Norms => "Norms",
            Self::Contributions => "Contributions",
            Self::Projection => "Projection",
            Self::Sweep => "Sweep",
            Self::Monitor => "Monitor",
        }
    }
}

/// Everything the user set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[allow(clippy::struct_excessive_bools)] // independent user toggles, persisted as they are
pub struct Settings {
    /// Model spec (a .gguf file, an HF folder or an HF cache id); empty = the demo model.
    pub model: String,
    pub device: String,
    /// Most recent first.
    pub recent_models: Vec<String>,
    /// The vector last used, and the model spec it was used with.
    pub vector: Option<PathBuf>,
    pub vector_model: String,
    pub prompt: String,
    pub chat: bool,
    pub layer_idx: usize,
    pub strength: f64,
    /// The strength slider spans `-strength_range..=strength_range`.
    pub strength_range: f64,
    pub mode: Mode,
    pub scope: Scope,
    /// 0 = greedy.
    pub temperature: f64,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Regenerate as soon as a steering setting changes.
    pub live: bool,
    /// Tint generated tokens by their projection onto the direction.
    pub tint: bool,
    pub plot_tab: PlotTab,
    pub show_plots: bool,
    pub dark: bool,
    /// Where exports (CSV, JSON, PNG) and extracted vectors are written.
    pub output_dir: PathBuf,
    /// Prompt files for extraction, sweeps and the monitor (empty = the model's own, else the
    /// shipped refusal sets).
    pub positive_prompts: String,
    pub negative_prompts: String,
    pub eval_prompts: String,
    /// Prompts per set for extraction, and per run for sweeps and the monitor.
    pub extract_limit: usize,
    pub eval_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: String::new(),
            device: "cpu".into(),
            recent_models: Vec::new(),
            vector: None,
            vector_model: String::new(),
            prompt: EXAMPLE_PROMPTS[1].into(),
            chat: true,
            layer_idx: 0,
            strength: 1.0,
            strength_range: 8.0,
            mode: Mode::Add,
            scope: Scope::Prompt,
            temperature: 0.0,
            seed: 0,
            max_new_tokens: 48,
            live: true,
            tint: true,
            plot_tab: PlotTab::Norms,
            show_plots: true,
            dark: true,
            output_dir: default_output_dir(),
            positive_prompts: String::new(),
            negative_prompts: String::new(),
            eval_prompts: String::new(),
            extract_limit: 64,
            eval_limit: 24,
        }
    }
}

/// `~/steerscope` (or `./steerscope` without a home folder).
#[must_use]
pub fn default_output_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join("steerscope")
}

impl Settings {
    /// The model spec to load: the setting, else the embedded demo model.
    #[must_use]
    pub fn model_spec(&self) -> String {
        if self.model.trim().is_empty() {
            crate::demo::default_model_dir().display().to_string()
        } else {
            self.model.trim().to_owned()
        }
    }

    /// Put `spec` first in the recent list (at most 8).
    pub fn remember_model(&mut self, spec: &str) {
        self.recent_models.retain(|m| m != spec);
        self.recent_models.insert(0, spec.to_owned());
        self.recent_models.truncate(8);
    }

    /// The generation these settings describe.
    #[must_use]
    pub fn generate_params(&self) -> GenerateParams {
        GenerateParams {
            prompt: self.prompt.clone(),
            chat: self.chat,
            layer_idx: self.layer_idx,
            strength: self.strength,
            mode: self.mode,
            scope: self.scope,
            sampling: Sampling {
                temperature: self.temperature,
                top_p: None,
            },
            seed: self.seed,
            max_new_tokens: self.max_new_tokens,
        }
    }
}
