//! `steerscope bench-ui`: the app's latency, headless. The real [`App`] runs frame by frame on an
//! egui context (layout and tessellation, no GPU painting) while its worker generates; the
//! strength is changed mid-generation, as a dragged slider does, and we time the first steered
//! token of the new request as the UI receives it, and every frame while generating.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use steerscope::app::{App, Settings, Startup};

#[derive(Args, Debug)]
pub struct BenchUiArgs {
    /// Model (default: the embedded demo model).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Vector (default: the shipped one for the model).
    #[arg(long, short = 'v')]
    pub vector: Option<PathBuf>,
    /// Strength changes to time.
    #[arg(long, default_value_t = 12)]
    pub changes: usize,
    /// Tokens per stream.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    /// Pause between frames when nothing is waiting (an idle eframe loop sleeps until woken;
    /// this bounds how late the UI sees an event).
    #[arg(long, default_value_t = 1.0)]
    pub frame_gap_ms: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "n": v.len(),
        "p50_ms": percentile(&v, 0.5),
        "p95_ms": percentile(&v, 0.95),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
    });
    eprintln!(
        "{name}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n = {})",
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.last().copied().unwrap_or(f64::NAN),
        v.len()
    );
    line
}

struct Driver {
    ctx: egui::Context,
    app: App,
    start: Instant,
    gap: Duration,
}

impl Driver {
    /// One frame; returns its time (egui pass + tessellation) in ms.
    fn frame(&mut self) -> f64 {
        let input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(
                egui::Pos2::ZERO,
                egui::vec2(1400.0, 900.0),
            )),
            time: Some(self.start.elapsed().as_secs_f64()),
            ..egui::RawInput::default()
        };
        let t = Instant::now();
        let app = &mut self.app;
        let out = self.ctx.run_ui(input, |ui| app.show(ui));
        let _ = self.ctx.tessellate(out.shapes, out.pixels_per_point);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(self.gap);
        ms
    }

    fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) -> anyhow::Result<Vec<f64>> {
        let start = Instant::now();
        let mut frames = Vec::new();
        while !done(&self.app) {
            if let Some((_, msg)) = self.app.runtime.errors.first() {
                anyhow::bail!("{what}: {msg}");
            }
            if start.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("timed out waiting for {what}");
            }
            frames.push(self.frame());
        }
        Ok(frames)
    }
}

pub fn bench_ui(a: &BenchUiArgs) -> anyhow::Result<()> {
    let ctx = egui::Context::default();
    let settings = Settings {
        max_new_tokens: a.max_tokens,
        output_dir: std::env::temp_dir().join("steerscope-bench-ui"),
        ..Settings::default()
    };
    let app = App::with_settings(
        &ctx,
        settings,
        Startup {
            model: a.model.clone(),
            vector: a.vector.clone(),
        },
    );
    let mut d = Driver {
        ctx,
        app,
        start: Instant::now(),
        gap: Duration::from_secs_f64(a.frame_gap_ms.max(0.0) / 1e3),
    };
    d.until("the model, the vector and the first generation", |app| {
        app.ready() && !app.runtime.completed.is_empty() && !app.runtime.generating
    })?;
    let model = d.app.runtime.model.as_ref().map(|m| m.spec.clone());
    eprintln!("model: {}", model.unwrap_or_default());
    let mut latencies = Vec::new();
    let mut generating_frames = Vec::new();
    for i in 0..a.changes {
        // Change the strength mid-generation (after the running request's first steered
        // token), as dragging the slider does; the next frame starts the new request.
        let strength = 0.5 + (i % 5) as f64 * 0.5;
        d.app.settings.strength = if (d.app.settings.strength - strength).abs() < 1e-9 {
            strength + 0.25
        } else {
            strength
        };
        let before = d.app.runtime.completed.len();
        generating_frames.push(d.frame());
        let frames = d.until("the first steered token", |app| {
            app.runtime.first_token_ms.is_some()
        })?;
        generating_frames.extend(frames);
        if let Some(ms) = d.app.runtime.first_token_ms {
            latencies.push(ms);
        }
        if i + 1 == a.changes {
            let frames = d.until("the last generation", |app| {
                app.runtime.completed.len() > before && !app.runtime.generating
            })?;
            generating_frames.extend(frames);
        }
    }
    let last_prefill_ms = d.app.runtime.generation.as_ref().map(|g| g.prefill_ms);
    if let Some(ms) = last_prefill_ms {
        eprintln!("prefill of the last request (steered stream only): {ms:.1} ms");
    }
    let report = serde_json::json!({
        "last_prefill_ms": last_prefill_ms,
        "first_steered_token_after_strength_change": summary("first steered token after a strength change", latencies),
        "frame_while_generating": summary("frame time while generating", generating_frames),
        "max_tokens": a.max_tokens,
        "frame_gap_ms": a.frame_gap_ms,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
