//! The top bar: the model (open, recent, typed path, drops), device, model facts, status and
//! progress, exports and the theme.

use super::{Intent, Runtime, Settings};
use crate::worker::Site;

/// An error banner with a dismiss button; returns the intent if dismissed.
pub fn error_banner(ui: &mut egui::Ui, rt: &Runtime, site: Site) -> Option<Intent> {
    let message = rt.error(site)?;
    let mut dismissed = false;
    egui::Frame::new()
        .fill(ui.visuals().error_fg_color.gamma_multiply(0.15))
        .stroke(egui::Stroke::new(1.0, ui.visuals().error_fg_color))
        .corner_radius(4.0)
        .inner_margin(6.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().error_fg_color, "Error:");
                ui.add(egui::Label::new(message).wrap());
                if ui.small_button("Dismiss").clicked() {
                    dismissed = true;
                }
            });
        });
    dismissed.then_some(Intent::DismissError(site))
}

pub fn top_bar_ui(ui: &mut egui::Ui, settings: &mut Settings, rt: &Runtime) -> Vec<Intent> {
    let mut intents = Vec::new();
    egui::Panel::top("top_bar").show(ui, |ui| {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            ui.strong("steerscope");
            ui.separator();
            ui.menu_button("Open model", |ui| {
                if ui.button("Folder (HF safetensors)…").clicked() {
                    intents.push(Intent::OpenModelFolder);
                    ui.close();
                }
                if ui.button("GGUF file…").clicked() {
                    intents.push(Intent::OpenModelFile);
                    ui.close();
                }
                if ui.button("Embedded demo model").clicked() {
                    intents.push(Intent::LoadModel(
                        crate::demo::default_model_dir().display().to_string(),
                    ));
                    ui.close();
                }
                if !settings.recent_models.is_empty() {
                    ui.separator();
                    ui.label("Recent");
                    for m in &settings.recent_models {
                        if ui.button(short_path(m)).on_hover_text(m).clicked() {
                            intents.push(Intent::LoadModel(m.clone()));
                            ui.close();
                        }
                    }
                }
            });
            let field = ui.add(
                egui::TextEdit::singleline(&mut settings.model)
                    .hint_text("model path, .gguf or HF id (empty: demo)")
                    .desired_width(260.0),
            );
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Load").clicked() || enter {
                intents.push(Intent::LoadModel(settings.model_spec()));
            }
            ui.label("Device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(settings.device.as_str())
                .show_ui(ui, |ui| {
                    for d in devices() {
                        ui.selectable_value(&mut settings.device, d.to_owned(), d);
                    }
                });
            right_controls(ui, settings, rt, &mut intents);
        });
        ui.horizontal(|ui| match (&rt.model, &rt.loading) {
            (_, Some(spec)) => {
                ui.spinner();
                ui.label(format!("loading {}", short_path(spec)));
            }
            (Some(m), None) => {
                let i = &m.info;
                ui.label(format!(
                    "{} · {} · {} layers · hidden {} · {} · {}",
                    short_path(&m.spec),
                    i.family,
                    i.n_layers,
                    i.hidden_size,
                    i.quantization,
                    m.device
                ))
                .on_hover_text(i.path.display().to_string());
            }
            (None, None) => {
                ui.label("no model loaded");
            }
        });
        for site in [Site::Worker, Site::Model] {
            if let Some(i) = error_banner(ui, rt, site) {
                intents.push(i);
            }
        }
        ui.add_space(2.0);
    });
    intents
}

/// Progress, plots toggle, exports and theme, right-aligned on the first row.
fn right_controls(
    ui: &mut egui::Ui,
    settings: &mut Settings,
    rt: &Runtime,
    intents: &mut Vec<Intent>,
) {
    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
        let dark = settings.dark;
        if ui
            .button(if dark { "Light theme" } else { "Dark theme" })
            .on_hover_text("Light or dark theme")
            .clicked()
        {
            intents.push(Intent::SetTheme(!dark));
        }
        ui.menu_button("Export", |ui| {
            if ui.button("Plot data as CSV").clicked() {
                intents.push(Intent::ExportCsv);
                ui.close();
            }
            if ui.button("Plot data as JSON").clicked() {
                intents.push(Intent::ExportJson);
                ui.close();
            }
            if ui.button("Window as PNG").clicked() {
                intents.push(Intent::Screenshot);
                ui.close();
            }
            ui.label(format!("to {}", settings.output_dir.display()));
        });
        ui.checkbox(&mut settings.show_plots, "Plots");
        if let Some((stage, fraction)) = &rt.progress {
            let bar = egui::ProgressBar::new(fraction.unwrap_or(0.0))
                .desired_width(160.0)
                .text(stage.as_str());
            let bar = if fraction.is_none() {
                bar.animate(true)
            } else {
                bar
            };
            ui.add(bar);
        } else if let Some(note) = &rt.notice {
            ui.label(egui::RichText::new(note).weak());
        }
    });
}

/// The devices this build can use.
fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if cfg!(feature = "cuda") {
        d.push("cuda");
    }
    if cfg!(feature = "metal") {
        d.push("metal");
    }
    d
}

/// The last two components of a path, for compact labels.
#[must_use]
pub fn short_path(p: &str) -> String {
    let parts: Vec<&str> = p.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}
