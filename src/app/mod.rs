//! The desktop app: eframe state, the event loop with the model worker, and the panels.
//!
//! Each panel is a `*_ui` function in its own file that draws from [`Settings`] and [`Runtime`]
//! and returns [`Intent`]s; [`App::apply`] carries them out after drawing (DESIGN.md rule 4).

mod dialogs;
mod export;
mod generations;
mod plots;
mod prompt_panel;
pub mod settings;
mod steering_panel;
mod top_bar;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub use settings::{PlotTab, Settings};

use crate::steer::monitor::MonitorReport;
use crate::steer::sweep::SweepResult;
use crate::worker::{
    Command, Event, Generation, JobId, ModelFacts, MonitorParams, Site, StreamKind, SweepParams,
    VectorFacts, WorkerHandle,
};

/// What the user asked for on the command line; overrides the persisted settings.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    pub model: Option<String>,
    pub vector: Option<PathBuf>,
}

/// Something a panel asks for; applied after the frame is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    LoadModel(String),
    OpenModelFolder,
    OpenModelFile,
    LoadVector(PathBuf),
    OpenVectorFile,
    ExtractVector,
    Generate,
    Cancel,
    RunSweep,
    RunMonitor,
    ExportCsv,
    ExportJson,
    Screenshot,
    DismissError(Site),
    SetTheme(bool),
}

/// One column of the side-by-side view, as it streams.
#[derive(Debug, Clone, Default)]
pub struct Column {
    pub label: String,
    pub kind: Option<StreamKind>,
    pub text: String,
    /// The refusal judge's verdict, once the stream is done.
    pub refused: Option<bool>,
}

/// The app's runtime view of the worker's results (not persisted).
#[derive(Default)]
pub struct Runtime {
    pub model: Option<ModelFacts>,
    /// The model spec being loaded, while it loads.
    pub loading: Option<String>,
    pub vector: Option<VectorFacts>,
    /// The loaded model and its training rounds, for the monitor.
    pub checkpoints: Vec<String>,
    /// Shipped vectors in `vectors/`.
    pub shipped: Vec<PathBuf>,
    pub columns: Vec<Column>,
    /// The generation the columns belong to.
    pub columns_job: Option<JobId>,
    /// The last finished generation (its plots are the ones shown).
    pub generation: Option<Generation>,
    pub generating: bool,
    pub long_job: Option<JobId>,
    pub progress: Option<(String, Option<f32>)>,
    /// One message per place in the window.
    pub errors: Vec<(Site, String)>,
    /// A passing note (a written export, an extracted vector).
    pub notice: Option<String>,
    pub sweep: Option<SweepResult>,
    pub monitor: Option<(MonitorReport, Vec<String>)>,
    /// Jobs whose results were shown, and jobs that were cancelled, in order.
    pub completed: Vec<JobId>,
    pub cancelled: Vec<JobId>,
    /// Worker panics seen (each restarted the worker).
    pub panics: Vec<String>,
    /// When the current generation was requested, and how long its first steered token took.
    pub requested_at: Option<Instant>,
    pub first_token_ms: Option<f64>,
    /// Apply the next vector's sidecar defaults (layer, scope) when it loads.
    apply_vector_defaults: bool,
    /// A vector to load once the model is loaded.
    pending_vector: Option<PathBuf>,
    /// The steering settings of the last request, to regenerate when they change.
    last_live_key: Option<String>,
    /// The window screenshot, once eframe delivers it.
    screenshot: Option<crossbeam_channel::Receiver<Arc<egui::ColorImage>>>,
    dialogs: dialogs::Dialogs,
}

impl Runtime {
    /// The error shown at `site`, if any.
    #[must_use]
    pub fn error(&self, site: Site) -> Option<&str> {
        self.errors
            .iter()
            .find(|(s, _)| *s == site)
            .map(|(_, m)| m.as_str())
    }

    fn set_error(&mut self, site: Site, message: String) {
        self.errors.retain(|(s, _)| *s != site);
        self.errors.push((site, message));
    }

    fn clear_error(&mut self, site: Site) {
        self.errors.retain(|(s, _)| *s != site);
    }
}

/// The steerscope window.
pub struct App {
    pub settings: Settings,
    pub runtime: Runtime,
    worker: WorkerHandle,
    ctx: egui::Context,
}

impl App {
    /// The app as eframe creates it: settings restored from storage, then overridden by
    /// `startup`.
    #[must_use]
    pub fn new(cc: &eframe::CreationContext<'_>, startup: Startup) -> Self {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value::<Settings>(s, eframe::APP_KEY))
            .unwrap_or_default();
        Self::with_settings(&cc.egui_ctx, settings, startup)
    }

    /// The app on `ctx` with `settings` (tests and benchmarks start here).
    #[must_use]
    pub fn with_settings(ctx: &egui::Context, mut settings: Settings, startup: Startup) -> Self {
        let waker_ctx = ctx.clone();
        let worker = WorkerHandle::spawn(Arc::new(move || waker_ctx.request_repaint()));
        if let Some(model) = startup.model {
            settings.model = model;
        }
        ctx.set_theme(if settings.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
        let mut app = Self {
            settings,
            runtime: Runtime {
                shipped: crate::vector::shipped_vectors(),
                pending_vector: startup.vector,
                ..Runtime::default()
            },
            worker,
            ctx: ctx.clone(),
        };
        let spec = app.settings.model_spec();
        app.load_model(spec);
        app
    }

    /// The worker handle (tests inspect restarts and cancel flags).
    #[must_use]
    pub fn worker(&self) -> &WorkerHandle {
        &self.worker
    }

    /// Ask the worker to panic (tests check that the app survives it).
    pub fn inject_worker_panic(&mut self) {
        let _ = self.worker.send(Command::Panic);
    }

    /// Load a vector file (as the vector picker and a dropped file do).
    pub fn open_vector(&mut self, path: &Path) {
        self.apply(vec![Intent::LoadVector(path.to_path_buf())]);
    }

    /// Whether a model and a vector are loaded and nothing is loading.
    #[must_use]
    pub fn ready(&self) -> bool {
        self.runtime.model.is_some()
            && self.runtime.vector.is_some()
            && self.runtime.loading.is_none()
    }

    fn load_model(&mut self, spec: String) {
        self.runtime.loading = Some(spec.clone());
        self.runtime.clear_error(Site::Model);
        self.send(Command::LoadModel {
            spec,
            device: self.settings.device.clone(),
        });
    }

    fn send(&mut self, cmd: Command) {
        if let Err(e) = self.worker.send(cmd) {
            self.runtime.set_error(Site::Model, e);
        }
    }

    /// The settings the live regeneration watches (everything but the prompt text).
    fn live_key(&self) -> String {
        let mut p = self.settings.generate_params();
        p.prompt.clear();
        format!("{p:?}")
    }

    /// Start a generation with the current settings (the running one is cancelled).
    pub fn generate(&mut self) {
        if !self.ready() {
            return;
        }
        if self.settings.prompt.trim().is_empty() {
            self.runtime.set_error(
                Site::Generate,
                "the prompt is empty: type one or pick an example".into(),
            );
            return;
        }
        self.runtime.clear_error(Site::Generate);
        let params = self.settings.generate_params();
        self.runtime.last_live_key = Some(self.live_key());
        match self.worker.generate(params.clone()) {
            Ok(job) => {
                self.runtime.columns = generations::placeholder_columns(&params);
                self.runtime.columns_job = Some(job);
                self.runtime.generating = true;
                self.runtime.requested_at = Some(Instant::now());
                self.runtime.first_token_ms = None;
            }
            Err(e) => self.runtime.set_error(Site::Generate, e),
        }
    }

    fn cancel(&mut self) {
        self.worker.cancel_generation();
        self.worker.cancel_long_job();
    }

    /// Drain the worker's events (never blocks).
    pub fn drain_events(&mut self) {
        while let Some(ev) = self.worker.try_recv() {
            self.on_event(ev);
        }
    }

    fn on_event(&mut self, ev: Event) {
        let rt = &mut self.runtime;
        match ev {
            Event::Progress { stage, fraction } => rt.progress = Some((stage, fraction)),
            Event::ModelLoaded(facts) => self.on_model_loaded(*facts),
            Event::VectorLoaded(facts) => self.on_vector_loaded(*facts),
            Event::VectorExtracted { path, .. } => {
                rt.progress = None;
                rt.notice = Some(format!("extracted and saved {}", path.display()));
                rt.apply_vector_defaults = true;
                rt.shipped = crate::vector::shipped_vectors();
            }
            Event::Token {
                job,
                stream_idx,
                text,
            } => {
                if rt.columns_job == Some(job) {
                    if let Some(col) = rt.columns.get_mut(stream_idx) {
                        col.text.push_str(&text);
                    }
                    let steered = rt
                        .columns
                        .get(stream_idx)
                        .is_some_and(|c| c.kind == Some(StreamKind::Steered));
                    if steered && rt.first_token_ms.is_none() {
                        rt.first_token_ms =
                            rt.requested_at.map(|t| t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            Event::Generated { job, generation } => {
                if rt.columns_job == Some(job) {
                    rt.columns = generations::final_columns(&generation);
                    rt.generation = Some(*generation);
                    rt.generating = false;
                    rt.completed.push(job);
                }
            }
            Event::SweepDone { job, result } => {
                if rt.long_job == Some(job) {
                    rt.sweep = Some(*result);
                    rt.long_job = None;
                    rt.progress = None;
                    rt.completed.push(job);
                }
            }
            Event::MonitorDone {
                job,
                report,
                checkpoints,
            } => {
                if rt.long_job == Some(job) {
                    rt.monitor = Some((*report, checkpoints));
                    rt.long_job = None;
                    rt.progress = None;
                    rt.completed.push(job);
                }
            }
            Event::Cancelled { job } => {
                rt.cancelled.push(job);
                if rt.columns_job == Some(job) {
                    rt.generating = false;
                }
                if rt.long_job == Some(job) {
                    rt.long_job = None;
                    rt.progress = None;
                }
            }
            Event::Failed { job, site, message } => {
                rt.progress = None;
                match site {
                    Site::Model => rt.loading = None,
                    Site::Generate if job.is_some() && job == rt.columns_job => {
                        rt.generating = false;
                    }
                    Site::Sweep | Site::Monitor if job == rt.long_job => rt.long_job = None,
                    _ => {}
                }
                if site == Site::Generate && job.is_some() && job != rt.columns_job {
                    return; // a superseded request's error
                }
                let message = match site {
                    Site::Model => format!("Could not load the model: {message}. The previous model (if any) is still loaded; open another folder or .gguf file."),
                    Site::Vector => format!("Could not use the vector: {message}. Pick a vector made for this model, or extract one."),
                    _ => message,
                };
                rt.set_error(site, message);
            }
            Event::Panicked { message } => self.on_panic(message),
        }
    }

    fn on_model_loaded(&mut self, facts: ModelFacts) {
        let rt = &mut self.runtime;
        rt.loading = None;
        rt.progress = None;
        rt.clear_error(Site::Model);
        let spec = facts.spec.clone();
        let demo = crate::demo::default_model_dir().display().to_string();
        self.settings.model = if spec == demo {
            String::new()
        } else {
            spec.clone()
        };
        self.settings.remember_model(&spec);
        let n_layers = facts.info.n_layers;
        self.settings.layer_idx = self.settings.layer_idx.min(n_layers.saturating_sub(1));
        let model_path = facts.info.path.clone();
        let same_model = self.settings.vector_model == spec;
        rt.checkpoints = Self::find_checkpoints(&facts);
        rt.model = Some(facts);
        // A vector from the command line or a drop; else the one last used with this model;
        // else the shipped one for it (with its sidecar's layer and scope).
        let vector = if let Some(v) = rt.pending_vector.take() {
            rt.apply_vector_defaults = true;
            Some(v)
        } else if let Some(v) = self.settings.vector.clone().filter(|_| same_model) {
            Some(v)
        } else {
            rt.apply_vector_defaults = true;
            crate::vector::find_shipped(&model_path)
        };
        if let Some(path) = vector {
            self.send(Command::LoadVector { path });
        } else {
            self.runtime.vector = None;
            self.runtime.set_error(
                Site::Vector,
                "No shipped vector matches this model: open a vector file or extract one from the prompt sets.".into(),
            );
        }
    }

    fn on_vector_loaded(&mut self, facts: VectorFacts) {
        let rt = &mut self.runtime;
        rt.clear_error(Site::Vector);
        let n_layers = rt.model.as_ref().map_or(1, |m| m.info.n_layers);
        if std::mem::take(&mut rt.apply_vector_defaults) {
            self.settings.layer_idx = facts
                .best_layer
                .filter(|l| *l < n_layers)
                .unwrap_or(n_layers / 2);
            if let Some(scope) = facts.scope {
                self.settings.scope = scope;
            }
        }
        self.settings.vector = Some(facts.path.clone());
        self.settings.vector_model = rt
            .model
            .as_ref()
            .map(|m| m.spec.clone())
            .unwrap_or_default();
        rt.vector = Some(facts);
        if self.settings.live || rt.generation.is_none() {
            self.generate();
        }
    }

    fn on_panic(&mut self, message: String) {
        self.worker.restart();
        let spec = self
            .runtime
            .model
            .as_ref()
            .map_or_else(|| self.settings.model_spec(), |m| m.spec.clone());
        let rt = &mut self.runtime;
        rt.generating = false;
        rt.long_job = None;
        rt.progress = None;
        rt.model = None;
        rt.vector = None;
        rt.set_error(
            Site::Worker,
            format!("The model worker crashed ({message}); it was restarted and the model is reloading."),
        );
        rt.panics.push(message);
        self.load_model(spec);
    }

    /// Carry out what the panels asked for.
    fn apply(&mut self, intents: Vec<Intent>) {
        for intent in intents {
            match intent {
                Intent::LoadModel(spec) => {
                    if spec.trim().is_empty() {
                        self.runtime.set_error(
                            Site::Model,
                            "Type a model path (a folder or a .gguf file) or an HF cache id."
                                .into(),
                        );
                    } else {
                        self.load_model(spec.trim().to_owned());
                    }
                }
                Intent::OpenModelFolder => self
                    .runtime
                    .dialogs
                    .open(&self.ctx, dialogs::Pick::ModelFolder),
                Intent::OpenModelFile => self
                    .runtime
                    .dialogs
                    .open(&self.ctx, dialogs::Pick::ModelFile),
                Intent::OpenVectorFile => self
                    .runtime
                    .dialogs
                    .open(&self.ctx, dialogs::Pick::VectorFile),
                Intent::LoadVector(path) => {
                    self.runtime.apply_vector_defaults = true;
                    self.send(Command::LoadVector { path });
                }
                Intent::ExtractVector => self.extract(),
                Intent::Generate => self.generate(),
                Intent::Cancel => self.cancel(),
                Intent::RunSweep => self.run_sweep(),
                Intent::RunMonitor => self.run_monitor(),
                Intent::ExportCsv => self.export(export::Format::Csv),
                Intent::ExportJson => self.export(export::Format::Json),
                Intent::Screenshot => {
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    let ctx = self.ctx.clone();
                    self.runtime.screenshot = Some(rx);
                    self.ctx
                        .send_viewport_cmd(egui::ViewportCommand::Screenshot(
                            egui::ScreenshotCallback::new(move |image| {
                                let _ = tx.send(image);
                                ctx.request_repaint();
                            }),
                        ));
                }
                Intent::DismissError(site) => self.runtime.clear_error(site),
                Intent::SetTheme(dark) => {
                    self.settings.dark = dark;
                    self.ctx.set_theme(if dark {
                        egui::Theme::Dark
                    } else {
                        egui::Theme::Light
                    });
                }
            }
        }
    }

    /// The model's own prompt file `name` (as the demo model ships), else the shipped refusal
    /// set's.
    fn prompt_file(&self, setting: &str, name: &str) -> PathBuf {
        if !setting.trim().is_empty() {
            return PathBuf::from(setting.trim());
        }
        if let Some(m) = &self.runtime.model {
            let own = m.info.path.join("prompts").join(name);
            if own.is_file() {
                return own;
            }
        }
        let local = Path::new("assets/prompts/refusal").join(name);
        if local.is_file() {
            local
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/prompts/refusal")
                .join(name)
        }
    }

    /// The extraction's prompt files and output path.
    #[must_use]
    pub fn extract_job(&self) -> crate::vector::ExtractJob {
        let stem = self.runtime.model.as_ref().map_or_else(
            || "model".to_owned(),
            |m| {
                m.info
                    .path
                    .file_stem()
                    .map_or_else(|| "model".into(), |s| s.to_string_lossy().to_lowercase())
            },
        );
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::vector::ExtractJob {
            positive: self.prompt_file(&self.settings.positive_prompts, "harmful_train.json"),
            negative: self.prompt_file(&self.settings.negative_prompts, "harmless_train.json"),
            out: self
                .settings
                .output_dir
                .join("vectors")
                .join(format!("{stem}.extracted-{stamp}.safetensors")),
            limit: Some(self.settings.extract_limit.max(1)),
            method: crate::extract::Method::MeanDiff,
            opts: crate::extract::ExtractOptions::default(),
            command: "steerscope gui: extract".into(),
        }
    }

    fn extract(&mut self) {
        let job = self.extract_job();
        if let Some(dir) = job.out.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                self.runtime.set_error(
                    Site::Vector,
                    format!("{}: cannot create the folder: {e}", dir.display()),
                );
                return;
            }
        }
        if let Err(e) = self.worker.extract(job) {
            self.runtime.set_error(Site::Vector, e);
        }
    }

    fn run_sweep(&mut self) {
        let Some(model) = &self.runtime.model else {
            return;
        };
        let n = model.info.n_layers;
        let max = self.settings.strength_range.abs().max(0.5);
        let params = SweepParams {
            prompts: self.prompt_file(&self.settings.eval_prompts, "harmless_test.json"),
            limit: self.settings.eval_limit.max(1),
            layers: (0..n).collect(),
            strengths: (0..=4).map(|i| max * f64::from(i) / 4.0).collect(),
            scope: self.settings.scope,
            max_new_tokens: 12,
        };
        match self.worker.sweep(params) {
            Ok(job) => {
                self.runtime.long_job = Some(job);
                self.runtime.clear_error(Site::Sweep);
            }
            Err(e) => self.runtime.set_error(Site::Sweep, e),
        }
    }

    /// The checkpoints the monitor runs over: the model folder and its `rounds/*` folders.
    #[must_use]
    pub fn checkpoints(&self) -> Vec<String> {
        self.runtime.checkpoints.clone()
    }

    fn find_checkpoints(model: &ModelFacts) -> Vec<String> {
        let rounds = model.info.path.join("rounds");
        let Ok(entries) = std::fs::read_dir(&rounds) else {
            return vec![];
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file())
            .collect();
        found.sort();
        std::iter::once(model.info.path.clone())
            .chain(found)
            .map(|p| p.display().to_string())
            .collect()
    }

    fn run_monitor(&mut self) {
        let checkpoints = self.checkpoints();
        if checkpoints.len() < 2 {
            self.runtime.set_error(
                Site::Monitor,
                "The monitor needs training checkpoints: a model folder with rounds/round-NN folders beside its weights (as assets/demo-model has).".into(),
            );
            return;
        }
        let layer_idx = self
            .settings
            .vector
            .as_deref()
            .and_then(|v| crate::vector::sidecar_layer(v, "monitor_layer"))
            .unwrap_or(self.settings.layer_idx);
        let params = MonitorParams {
            checkpoints,
            prompts: self.prompt_file(&self.settings.eval_prompts, "harmless_test.json"),
            limit: self.settings.eval_limit.max(1),
            layer_idx,
            max_new_tokens: 8,
        };
        match self.worker.monitor(params) {
            Ok(job) => {
                self.runtime.long_job = Some(job);
                self.runtime.clear_error(Site::Monitor);
            }
            Err(e) => self.runtime.set_error(Site::Monitor, e),
        }
    }

    fn export(&mut self, format: export::Format) {
        match export::write(&self.settings.output_dir, format, &self.runtime) {
            Ok(path) => self.runtime.notice = Some(format!("wrote {}", path.display())),
            Err(e) => self.runtime.set_error(Site::Generate, e),
        }
    }

    /// Files dropped on the window: folders and model .gguf files open as models, the rest
    /// as vectors.
    fn handle_drops(ui: &egui::Ui) -> Vec<Intent> {
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        dropped
            .into_iter()
            .map(|p| {
                let is_gguf = p
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
                if p.is_dir() || (is_gguf && !crate::vector::is_control_vector(&p)) {
                    Intent::LoadModel(p.display().to_string())
                } else {
                    Intent::LoadVector(p)
                }
            })
            .collect()
    }

    /// Keyboard: Ctrl+Enter generates, Esc cancels.
    fn shortcuts(ui: &egui::Ui) -> Vec<Intent> {
        let mut intents = Vec::new();
        ui.input_mut(|i| {
            if i.consume_key(egui::Modifiers::COMMAND, egui::Key::Enter) {
                intents.push(Intent::Generate);
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::Escape) {
                intents.push(Intent::Cancel);
            }
        });
        intents
    }

    /// Draw one frame and act on it (eframe's `ui`, without the eframe frame).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.drain_events();
        if let Some(picked) = self.runtime.dialogs.poll() {
            let intent = match picked {
                (dialogs::Pick::VectorFile, p) => Intent::LoadVector(p),
                (_, p) => Intent::LoadModel(p.display().to_string()),
            };
            self.apply(vec![intent]);
        }
        let shot = self
            .runtime
            .screenshot
            .as_ref()
            .and_then(|rx| rx.try_recv().ok());
        if let Some(image) = shot {
            self.runtime.screenshot = None;
            {
                match export::save_png(&image, &self.settings.output_dir) {
                    Ok(path) => self.runtime.notice = Some(format!("wrote {}", path.display())),
                    Err(e) => self.runtime.set_error(Site::Generate, e),
                }
            }
        }
        let mut intents = Self::shortcuts(ui);
        intents.extend(Self::handle_drops(ui));
        intents.extend(top_bar::top_bar_ui(ui, &mut self.settings, &self.runtime));
        intents.extend(steering_panel::steering_panel_ui(
            ui,
            &mut self.settings,
            &self.runtime,
        ));
        if self.settings.show_plots {
            let n_checkpoints = self.runtime.checkpoints.len();
            intents.extend(plots::plots_panel_ui(
                ui,
                &mut self.settings,
                &self.runtime,
                n_checkpoints,
            ));
        }
        egui::CentralPanel::default().show(ui, |ui| {
            intents.extend(prompt_panel::prompt_panel_ui(
                ui,
                &mut self.settings,
                &self.runtime,
            ));
            ui.separator();
            generations::generations_ui(ui, &self.settings, &self.runtime);
        });
        // Live: a changed steering setting regenerates (the running generation is cancelled).
        if self.settings.live
            && self.ready()
            && self.runtime.last_live_key.is_some()
            && self.runtime.last_live_key.as_deref() != Some(self.live_key().as_str())
            && !intents.contains(&Intent::Generate)
        {
            intents.push(Intent::Generate);
        }
        self.apply(intents);
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    /// Persist the settings, with the model that is loaded (not a path typed but not
    /// loaded, which may not exist).
    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        let mut settings = self.settings.clone();
        if let Some(m) = &self.runtime.model {
            let demo = crate::demo::default_model_dir().display().to_string();
            settings.model = if m.spec == demo {
                String::new()
            } else {
                m.spec.clone()
            };
        }
        eframe::set_value(storage, eframe::APP_KEY, &settings);
    }
}

/// Open the app in a window (`steerscope` and `steerscope gui`).
pub fn run(startup: Startup) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("steerscope")
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true),
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        "steerscope",
        options,
        Box::new(|cc| Ok(Box::new(App::new(cc, startup)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
