//! The steering panel: the vector (shipped, from a file, extracted), the layer and strength
//! sliders, mode, scope and sampling.

use super::top_bar::error_banner;
use super::{Intent, Runtime, Settings};
use crate::hooks::Scope;
use crate::worker::{Mode, Site};

pub fn steering_panel_ui(ui: &mut egui::Ui, s: &mut Settings, rt: &Runtime) -> Vec<Intent> {
    let mut intents = Vec::new();
    egui::Panel::left("steering")
        .resizable(true)
        .default_size(300.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                ui.heading("Steering");
                vector_ui(ui, s, rt, &mut intents);
                ui.separator();
                sliders_ui(ui, s, rt);
                ui.separator();
                ui.label("Mode");
                ui.horizontal(|ui| {
                    for m in Mode::ALL {
                        ui.radio_value(&mut s.mode, m, m.label());
                    }
                });
                ui.label("Scope of the addition");
                ui.horizontal(|ui| {
                    for (scope, label) in [
                        (Scope::All, "all positions"),
                        (Scope::Prompt, "prompt"),
                        (Scope::Generated, "generated"),
                    ] {
                        ui.radio_value(&mut s.scope, scope, label);
                    }
                });
                ui.separator();
                sampling_ui(ui, s);
                ui.separator();
                ui.checkbox(&mut s.live, "Live: regenerate when a setting changes");
                ui.checkbox(&mut s.tint, "Tint tokens by their projection");
            });
        });
    intents
}

fn vector_ui(ui: &mut egui::Ui, s: &mut Settings, rt: &Runtime, intents: &mut Vec<Intent>) {
    let current = rt
        .vector
        .as_ref()
        .map_or_else(|| "none".to_owned(), |v| file_name(&v.path));
    ui.horizontal(|ui| {
        ui.label("Vector");
        egui::ComboBox::from_id_salt("vector")
            .selected_text(current)
            .width(200.0)
            .show_ui(ui, |ui| {
                for path in &rt.shipped {
                    let selected = rt.vector.as_ref().is_some_and(|v| &v.path == path);
                    if ui.selectable_label(selected, file_name(path)).clicked() && !selected {
                        intents.push(Intent::LoadVector(path.clone()));
                    }
                }
            });
    });
    ui.horizontal(|ui| {
        if ui.button("Open file…").clicked() {
            intents.push(Intent::OpenVectorFile);
        }
        let enabled = rt.model.is_some() && rt.loading.is_none();
        if ui
            .add_enabled(enabled, egui::Button::new("Extract from prompts"))
            .on_hover_text("Mean difference, harmful minus harmless, at the last prompt token of every layer; written to the output folder and loaded")
            .clicked()
        {
            intents.push(Intent::ExtractVector);
        }
    });
    egui::CollapsingHeader::new("Extraction prompts")
        .default_open(false)
        .show(ui, |ui| {
            ui.add(
                egui::TextEdit::singleline(&mut s.positive_prompts)
                    .hint_text("positive: the model's harmful_train.json"),
            );
            ui.add(
                egui::TextEdit::singleline(&mut s.negative_prompts)
                    .hint_text("negative: the model's harmless_train.json"),
            );
            ui.add(egui::Slider::new(&mut s.extract_limit, 8..=512).text("prompts per set"));
        });
    if let Some(v) = &rt.vector {
        let layers = match (v.layers.first(), v.layers.last()) {
            (Some(a), Some(b)) if a != b => format!("layers {a}..={b}"),
            (Some(a), _) => format!("layer {a}"),
            _ => "no layers".into(),
        };
        let best = v
            .best_layer
            .map(|l| format!(" · best layer {l}"))
            .unwrap_or_default();
        ui.label(egui::RichText::new(format!("{layers}{best}")).weak())
            .on_hover_text(v.path.display().to_string());
    }
    if let Some(i) = error_banner(ui, rt, Site::Vector) {
        intents.push(i);
    }
}

fn sliders_ui(ui: &mut egui::Ui, s: &mut Settings, rt: &Runtime) {
    // Until a model is loaded, keep the restored layer as it is (the range is unknown).
    let max_layer = match &rt.model {
        Some(m) => {
            let max = m.info.n_layers.saturating_sub(1);
            s.layer_idx = s.layer_idx.min(max);
            max
        }
        None => s.layer_idx.max(1),
    };
    ui.add_enabled(
        rt.model.is_some(),
        egui::Slider::new(&mut s.layer_idx, 0..=max_layer).text("Layer"),
    )
    .on_hover_text("The vector is added to blocks.L.hook_resid_post, the output of block L");
    let range = s.strength_range.abs().max(0.1);
    ui.add(
        egui::Slider::new(&mut s.strength, -range..=range)
            .text("Strength")
            .fixed_decimals(2)
            .clamping(egui::SliderClamping::Never),
    )
    .on_hover_text("Multiple of the vector added (negative subtracts)");
    if let (Some(m), Some(v)) = (&rt.model, &rt.vector) {
        let resid = m.resid_norms.get(s.layer_idx).copied().unwrap_or(0.0);
        let vnorm = v.norms.get(s.layer_idx).copied().unwrap_or(0.0);
        if resid > 0.0 {
            let rel = s.strength * f64::from(vnorm) / f64::from(resid);
            ui.label(
                egui::RichText::new(format!(
                    "= {rel:+.2} × mean |resid| at layer {} (|v| {vnorm:.2}, |resid| {resid:.2})",
                    s.layer_idx
                ))
                .weak(),
            );
        }
    }
    ui.horizontal(|ui| {
        ui.label("Slider range ±");
        ui.add(
            egui::DragValue::new(&mut s.strength_range)
                .range(0.5..=1000.0)
                .speed(0.5),
        );
    });
}

fn sampling_ui(ui: &mut egui::Ui, s: &mut Settings) {
    ui.label("Sampling");
    let mut greedy = s.temperature <= 0.0;
    ui.horizontal(|ui| {
        if ui.radio_value(&mut greedy, true, "greedy").clicked() {
            s.temperature = 0.0;
        }
        if ui.radio_value(&mut greedy, false, "temperature").clicked() && s.temperature <= 0.0 {
            s.temperature = 0.7;
        }
    });
    if !greedy {
        ui.add(egui::Slider::new(&mut s.temperature, 0.05..=2.0).text("Temperature"));
        ui.horizontal(|ui| {
            ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed));
        });
    }
    ui.add(egui::Slider::new(&mut s.max_new_tokens, 1..=256).text("Max tokens"));
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}
