//! The desktop app, headless (`egui_kittest`), on the real demo model: widgets found by label,
//! sliders moved, buttons pressed, frames run until the worker's events arrive, and assertions
//! on what the user would see.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use steerscope::app::{App, PlotTab, Settings, Startup};
use steerscope::worker::{Site, StreamKind};

/// The demo model's shipped settings: the sidecar picks layer 3 and the prompt scope.
fn settings(out: &Path) -> Settings {
    Settings {
        output_dir: out.to_path_buf(),
        max_new_tokens: 24,
        ..Settings::default()
    }
}

fn harness<'a>(settings: Settings) -> Harness<'a, App> {
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_eframe(move |cc| App::with_settings(&cc.egui_ctx, settings, Startup::default()))
}

/// Run frames until `done` holds (the worker runs in real time beside the frames).
fn run_until(h: &mut Harness<'_, App>, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}; errors: {:?}",
            h.state().runtime.errors
        );
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
    h.step();
}

fn finished(app: &App, n: usize) -> bool {
    app.runtime.completed.len() >= n && !app.runtime.generating
}

fn started<'a>() -> (tempfile::TempDir, Harness<'a, App>) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(settings(dir.path()));
    run_until(&mut h, "the first generation", |a| finished(a, 1));
    (dir, h)
}

#[test]
fn opens_on_the_demo_model_and_generates_side_by_side() {
    let (_dir, h) = started();
    let app = h.state();
    let model = app.runtime.model.as_ref().unwrap();
    assert_eq!(model.info.n_layers, 6);
    assert_eq!(model.resid_norms.len(), 6);
    assert!(model.resid_norms.iter().all(|n| *n > 0.0));
    // The shipped vector and its sidecar's layer and scope.
    let vector = app.runtime.vector.as_ref().unwrap();
    assert!(vector.path.ends_with("demo-model.refusal.safetensors"));
    assert_eq!(app.settings.layer_idx, 3);

    // Both columns filled; the steered one refuses the harmless prompt, the unsteered does not.
    let cols = &app.runtime.columns;
    assert_eq!(cols.len(), 2);
    assert!(cols.iter().all(|c| !c.text.trim().is_empty()), "{cols:?}");
    assert_eq!(cols[0].refused, Some(false), "{}", cols[0].text);
    assert_eq!(cols[1].refused, Some(true), "{}", cols[1].text);
    h.get_by_label_contains("REFUSED");
    h.get_by_label_contains("complied");

    // Plots hold one value per layer, per stream; the heatmap one row per layer and a column
    // per token of each stream.
    let g = app.runtime.generation.as_ref().unwrap();
    let p = &g.plots;
    assert_eq!(p.n_layers, 6);
    for series in [
        &p.resid_norm,
        &p.attn_norm,
        &p.mlp_norm,
        &p.attn_contrib,
        &p.mlp_contrib,
    ] {
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.len() == 6));
    }
    // (The last token sampled is never fed back, so it has no activations.)
    let fed = g.prompt_tokens.len() + g.streams.iter().map(|s| s.tokens.len()).max().unwrap() - 1;
    for (row, stream) in g.streams.iter().enumerate() {
        let n = (g.prompt_tokens.len() + stream.tokens.len()).min(fed);
        assert_eq!(p.resid_proj[row].len(), 6);
        assert!(p.resid_proj[row].iter().all(|t| t.len() == n));
    }
    // Steering adds along the direction: the steered residual projects further onto it at
    // the steered layer, over the prompt (the addition's scope).
    let mean = |row: usize| -> f32 {
        let v = &p.resid_proj[row][3][..g.prompt_tokens.len()];
        v.iter().sum::<f32>() / v.len() as f32
    };
    assert!(mean(1) > mean(0) + 1.0, "{} vs {}", mean(1), mean(0));
    // The strength is also shown against the residual norm at the layer.
    h.get_by_label_contains("× mean |resid| at layer 3");
}

#[test]
fn sliders_regenerate_and_only_the_newest_request_runs() {
    let (_dir, mut h) = started();
    // Strength 0 adds nothing: the steered column must equal the unsteered one.
    h.get_by_role_and_label(Role::Slider, "Strength")
        .set_value_accesskit(0.0);
    run_until(&mut h, "the strength-0 generation", |a| finished(a, 2));
    let app = h.state();
    let g = app.runtime.generation.as_ref().unwrap();
    assert_eq!(g.params.strength, 0.0);
    assert_eq!(g.streams[0].text, g.streams[1].text);
    assert!(app.runtime.columns[1].label.contains("+0.00"));

    // The layer slider moves the addition.
    h.get_by_role_and_label(Role::Slider, "Layer")
        .set_value_accesskit(1.0);
    h.get_by_role_and_label(Role::Slider, "Strength")
        .set_value_accesskit(2.0);
    run_until(&mut h, "the layer-1 generation", |a| finished(a, 3));
    let g = h.state().runtime.generation.as_ref().unwrap();
    assert_eq!((g.params.layer_idx, g.params.strength), (1, 2.0));

    // Keep the worker busy with a sweep, then move the slider twice: the first request is
    // superseded before it starts (skipped, reported cancelled) and only the newest runs.
    h.state_mut().settings.eval_limit = 40;
    h.state_mut().settings.plot_tab = PlotTab::Sweep;
    h.step();
    h.get_by_label("Run sweep").click();
    h.step();
    let sweep_job = h.state().runtime.long_job.expect("a sweep is running");
    h.get_by_role_and_label(Role::Slider, "Strength")
        .set_value_accesskit(1.5);
    h.step();
    let first = h.state().worker().current_generation().unwrap();
    h.get_by_role_and_label(Role::Slider, "Strength")
        .set_value_accesskit(0.5);
    h.step();
    let second = h.state().worker().current_generation().unwrap();
    assert!(second > first);
    run_until(&mut h, "the newest generation", |a| {
        a.runtime.completed.contains(&second)
    });
    let app = h.state();
    assert!(
        app.runtime.cancelled.contains(&first),
        "{:?}",
        app.runtime.cancelled
    );
    assert!(!app.runtime.completed.contains(&first));
    assert_eq!(
        app.runtime.generation.as_ref().unwrap().params.strength,
        0.5
    );
    // The sweep finished in between (or after), with one cell per layer and strength.
    run_until(&mut h, "the sweep", |a| {
        a.runtime.completed.contains(&sweep_job)
    });
    let sweep = h.state().runtime.sweep.as_ref().unwrap();
    assert_eq!(sweep.layers.len(), 6);
    assert_eq!(sweep.cells.len(), 6 * 5);
}

#[test]
fn bad_model_path_shows_an_error_and_the_app_keeps_working() {
    let (_dir, mut h) = started();
    h.state_mut().settings.model = "/nope/missing-model.gguf".into();
    h.get_by_label("Load").click();
    run_until(&mut h, "the load error", |a| {
        a.runtime.error(Site::Model).is_some()
    });
    let msg = h.state().runtime.error(Site::Model).unwrap().to_owned();
    assert!(msg.contains("/nope/missing-model.gguf"), "{msg}");
    h.get_by_label_contains("Could not load the model");
    // The demo model is still loaded and generates, and it is what a restart would open.
    assert_eq!(h.state().runtime.model.as_ref().unwrap().info.n_layers, 6);
    let mut storage = Memory::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let saved: Settings = eframe::get_value(&storage, eframe::APP_KEY).unwrap();
    assert_eq!(saved.model, "");
    h.get_by_label("Generate").click();
    run_until(&mut h, "a generation after the error", |a| finished(a, 2));
    assert!(!h.state().runtime.columns[1].text.is_empty());
}

#[test]
fn wrong_width_vector_is_refused_and_the_loaded_one_stays() {
    let (_dir, mut h) = started();
    let wrong = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors/smollm2-135m-instruct.cheerful-gloomy.safetensors");
    h.state_mut().open_vector(&wrong);
    run_until(&mut h, "the vector error", |a| {
        a.runtime.error(Site::Vector).is_some()
    });
    let msg = h.state().runtime.error(Site::Vector).unwrap().to_owned();
    assert!(
        msg.contains("width 576") && msg.contains("hidden size 96"),
        "{msg}"
    );
    h.get_by_label_contains("Pick a vector made for this model");
    let app = h.state();
    assert!(app
        .runtime
        .vector
        .as_ref()
        .unwrap()
        .path
        .ends_with("demo-model.refusal.safetensors"));
    // Dismissing the error clears it.
    h.get_by_label("Dismiss").click_accesskit();
    h.run_steps(2);
    assert!(h.state().runtime.error(Site::Vector).is_none());
}

#[test]
fn worker_panic_is_reported_and_the_model_reloaded() {
    let (_dir, mut h) = started();
    h.state_mut().inject_worker_panic();
    run_until(&mut h, "the restarted worker", |a| {
        !a.runtime.panics.is_empty() && a.ready() && finished(a, 2)
    });
    let app = h.state();
    assert_eq!(app.worker().restarts(), 1);
    assert!(app.runtime.panics[0].contains("panic requested"));
    assert!(app.runtime.error(Site::Worker).unwrap().contains("crashed"));
    // The reloaded worker generates again, with the same vector.
    assert_eq!(app.runtime.columns.len(), 2);
    assert!(!app.runtime.columns[0].text.is_empty());
}

#[test]
fn keyboard_ctrl_enter_generates_and_esc_cancels() {
    let (_dir, mut h) = started();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.step();
    assert!(h.state().runtime.generating);
    run_until(&mut h, "the Ctrl+Enter generation", |a| finished(a, 2));
    // Esc cancels a long job (a sweep checks its flag between prompts).
    h.state_mut().settings.eval_limit = 200;
    h.state_mut().settings.plot_tab = PlotTab::Sweep;
    h.step();
    h.get_by_label("Run sweep").click();
    h.step();
    let job = h.state().runtime.long_job.unwrap();
    h.key_press(egui::Key::Escape);
    run_until(&mut h, "the cancelled sweep", |a| {
        a.runtime.long_job.is_none()
    });
    assert!(h.state().runtime.cancelled.contains(&job));
    assert!(h.state().runtime.sweep.is_none());
}

#[test]
fn exports_write_the_plotted_numbers() {
    let (dir, mut h) = started();
    h.get_by_label("Export").click();
    h.run_steps(3);
    h.get_by_label("Plot data as CSV").click();
    h.run_steps(3);
    h.get_by_label("Export").click();
    h.run_steps(3);
    h.get_by_label("Plot data as JSON").click();
    h.run_steps(3);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let csv = files
        .iter()
        .find(|p| p.extension().unwrap() == "csv")
        .unwrap();
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(text.starts_with("plot,stream,layer,token,value\n"));
    let resid_rows = text
        .lines()
        .filter(|l| l.starts_with("resid_norm,"))
        .count();
    assert_eq!(resid_rows, 2 * 6);
    let json = files
        .iter()
        .find(|p| p.extension().unwrap() == "json")
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(v["generation"]["plots"]["n_layers"], 6);
    let g = h.state().runtime.generation.as_ref().unwrap();
    assert_eq!(
        v["generation"]["streams"][1]["text"].as_str().unwrap(),
        g.streams[1].text
    );
    assert_eq!(g.streams[1].kind, StreamKind::Steered);
}

/// A tiny in-memory eframe storage.
#[derive(Default)]
struct Memory(std::collections::HashMap<String, String>);

impl eframe::Storage for Memory {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn settings_persist_across_restarts() {
    let (dir, mut h) = started();
    h.get_by_role_and_label(Role::Slider, "Strength")
        .set_value_accesskit(2.5);
    h.state_mut().settings.prompt = "Write a poem about cats".into();
    h.state_mut().settings.plot_tab = PlotTab::Projection;
    h.step();
    let mut storage = Memory::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let saved = h.state().settings.clone();
    drop(h);

    // A new app built by eframe's path reads them back.
    let storage: &'static Memory = Box::leak(Box::new(storage));
    let h2 = Harness::builder().build_eframe(move |cc| {
        cc.storage = Some(storage);
        App::new(cc, Startup::default())
    });
    let restored = &h2.state().settings;
    assert_eq!(restored, &saved);
    assert_eq!(restored.strength, 2.5);
    assert_eq!(restored.plot_tab, PlotTab::Projection);
    assert_eq!(restored.output_dir, dir.path());
}

/// Small image snapshots of the main views (wgpu on the software adapter), in
/// `tests/snapshots/`. `UPDATE_SNAPSHOTS=1` rewrites them.
#[test]
fn snapshots_of_the_main_views() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let mut h = Harness::builder()
        .with_size(egui::vec2(1000.0, 700.0))
        .wgpu()
        .build_eframe(move |cc| App::with_settings(&cc.egui_ctx, s, Startup::default()));
    run_until(&mut h, "the first generation", |a| finished(a, 1));
    let options = egui_kittest::SnapshotOptions::new()
        .threshold(2.0)
        .max_failed_pixels(200);
    h.snapshot_options("app_demo_norms", &options);
    h.state_mut().settings.plot_tab = PlotTab::Projection;
    h.step();
    h.step();
    h.snapshot_options("app_demo_projection", &options);
}

/// A file dropped on the window, as eframe hands it over.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_vector_and_model_folder_are_opened() {
    let (_dir, mut h) = started();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vector = root.join("vectors/demo-model.round-10.refusal.safetensors");
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(vector.clone())));
    run_until(&mut h, "the dropped vector", |a| {
        a.runtime.vector.as_ref().is_some_and(|v| v.path == vector)
    });
    // A dropped folder opens as a model: round 20 of the demo model's training.
    let round = root.join("assets/demo-model/rounds/round-20");
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(round.clone())));
    run_until(&mut h, "the dropped model", |a| {
        a.runtime
            .model
            .as_ref()
            .is_some_and(|m| m.info.path == round)
            && a.ready()
    });
    assert_eq!(
        h.state().settings.recent_models[0],
        round.display().to_string()
    );
}

#[test]
fn extract_from_prompts_writes_and_loads_a_vector() {
    let (dir, mut h) = started();
    h.state_mut().settings.extract_limit = 16;
    h.step();
    h.get_by_label("Extract from prompts").click();
    h.step();
    run_until(&mut h, "the extracted vector", |a| {
        a.runtime
            .vector
            .as_ref()
            .is_some_and(|v| v.path.starts_with(dir.path()))
    });
    let app = h.state();
    let v = app.runtime.vector.as_ref().unwrap();
    assert_eq!(v.layers, (0..6).collect::<Vec<_>>());
    assert!(v.norms.iter().all(|n| *n > 0.0));
    assert!(v.path.with_extension("json").is_file());
    assert!(app.runtime.notice.as_ref().unwrap().contains("extracted"));
    // It was extracted from the model's own harmful and harmless training prompts.
    let sidecar: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v.path.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["positive"], "harmful_train.json");
    assert_eq!(sidecar["n_positive"], 16);
}

#[test]
fn the_monitor_runs_over_the_training_rounds() {
    let (_dir, mut h) = started();
    assert_eq!(h.state().checkpoints().len(), 11);
    h.state_mut().settings.eval_limit = 6;
    h.state_mut().settings.plot_tab = PlotTab::Monitor;
    h.step();
    h.get_by_label("Run monitor").click();
    h.step();
    run_until(&mut h, "the monitor", |a| a.runtime.monitor.is_some());
    let (report, checkpoints) = h.state().runtime.monitor.as_ref().unwrap();
    assert_eq!(report.rows.len(), 11);
    assert_eq!(checkpoints.len(), 11);
    // The sidecar's monitoring layer, and the drift the demo model was trained to show: the
    // projection rises from round 0 to round 20.
    assert_eq!(report.layer_idx, 5);
    assert!(report.rows[10].projection > report.rows[0].projection + 1.0);
    h.get_by_label_contains("Pearson r");
}
