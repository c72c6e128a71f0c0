//! The side-by-side columns: unsteered | steered (| ablated), streamed token by token, each
//! marked refused or not, tokens optionally tinted by their projection onto the direction.

use super::{Column, Runtime, Settings};
use crate::worker::{GenerateParams, Generation, Mode, StreamKind};

/// Empty columns for a request, until its tokens arrive.
#[must_use]
pub fn placeholder_columns(p: &GenerateParams) -> Vec<Column> {
    let mut cols = vec![Column {
        label: "unsteered".into(),
        kind: Some(StreamKind::Unsteered),
        ..Column::default()
    }];
    if p.mode != Mode::Ablate {
        cols.push(Column {
            label: format!(
                "steered (layer {}, strength {:+.2})",
                p.layer_idx, p.strength
            ),
            kind: Some(StreamKind::Steered),
            ..Column::default()
        });
    }
    if p.mode != Mode::Add {
        cols.push(Column {
            label: "ablated (direction projected out)".into(),
            kind: Some(StreamKind::Ablated),
            ..Column::default()
        });
    }
    cols
}

/// The columns of a finished generation.
#[must_use]
pub fn final_columns(g: &Generation) -> Vec<Column> {
    g.streams
        .iter()
        .map(|s| Column {
            label: s.label.clone(),
            kind: Some(s.kind),
            text: s.text.clone(),
            refused: Some(s.refused),
        })
        .collect()
}

/// A diverging colour for `value / scale` in -1..=1: blue below zero, red above.
#[must_use]
pub fn diverging(value: f32, scale: f32, alpha: f32) -> egui::Color32 {
    let x = if scale > 0.0 {
        (value / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let a = (x.abs() * alpha * 255.0) as u8;
    if x >= 0.0 {
        egui::Color32::from_rgba_unmultiplied(230, 80, 60, a)
    } else {
        egui::Color32::from_rgba_unmultiplied(60, 120, 230, a)
    }
}

pub fn generations_ui(ui: &mut egui::Ui, s: &Settings, rt: &Runtime) {
    if rt.columns.is_empty() {
        ui.centered_and_justified(|ui| {
            ui.label(if rt.loading.is_some() {
                "Loading the model…"
            } else {
                "Press Generate (Ctrl+Enter) to see the unsteered and steered completions side by side."
            });
        });
        return;
    }
    // Tinting needs the finished generation's trace, for the same columns.
    let finished = rt.generation.as_ref().filter(|_| {
        rt.columns_job
            .is_some_and(|j| rt.completed.last() == Some(&j))
    });
    ui.columns(rt.columns.len(), |cols| {
        for (i, (ui, col)) in cols.iter_mut().zip(&rt.columns).enumerate() {
            column_ui(ui, i, col, finished.filter(|_| s.tint), rt.generating);
        }
    });
}

fn column_ui(
    ui: &mut egui::Ui,
    idx: usize,
    col: &Column,
    tint: Option<&Generation>,
    streaming: bool,
) {
    ui.horizontal(|ui| {
        ui.strong(&col.label);
        match col.refused {
            Some(true) => {
                ui.label(
                    egui::RichText::new(" REFUSED ")
                        .color(egui::Color32::WHITE)
                        .background_color(egui::Color32::from_rgb(190, 50, 40)),
                );
            }
            Some(false) => {
                ui.label(
                    egui::RichText::new(" complied ")
                        .color(egui::Color32::WHITE)
                        .background_color(egui::Color32::from_rgb(40, 130, 70)),
                );
            }
            None if streaming => {
                ui.spinner();
            }
            None => {}
        }
    });
    egui::ScrollArea::vertical()
        .id_salt(("column", idx))
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show(ui, |ui| match tint.and_then(|g| tinted(ui, g, idx)) {
            Some(job) => {
                ui.label(job);
            }
            None => {
                ui.add(egui::Label::new(col.text.trim_start()).wrap());
            }
        });
}

/// The generated tokens' projections at the steered layer, per stream, minus the unsteered
/// stream's mean over its generated tokens (so the tint shows where a stream sits relative to
/// the unsteered model), and the largest magnitude over all streams (the colour scale).
fn tint_values(g: &Generation) -> (Vec<Vec<f32>>, f32) {
    let start = g.prompt_tokens.len();
    let layer = g.params.layer_idx;
    let raw: Vec<Vec<f32>> = g
        .streams
        .iter()
        .enumerate()
        .map(|(row, s)| {
            let proj = g.plots.resid_proj.get(row).and_then(|r| r.get(layer));
            (0..s.tokens.len())
                .map(|t| {
                    proj.and_then(|p| p.get(start + t))
                        .copied()
                        .unwrap_or(f32::NAN)
                })
                .collect()
        })
        .collect();
    let base: Vec<f32> = raw
        .first()
        .map(|v| v.iter().copied().filter(|x| x.is_finite()).collect())
        .unwrap_or_default();
    let baseline = if base.is_empty() {
        0.0
    } else {
        base.iter().sum::<f32>() / base.len() as f32
    };
    let centred: Vec<Vec<f32>> = raw
        .iter()
        .map(|v| {
            v.iter()
                .map(|x| if x.is_finite() { x - baseline } else { 0.0 })
                .collect()
        })
        .collect();
    let scale = centred.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    (centred, scale)
}

/// The stream's generated tokens, each with a background by its projection at the steered
/// layer relative to the unsteered stream (red: further along the direction, blue: against).
fn tinted(ui: &egui::Ui, g: &Generation, idx: usize) -> Option<egui::text::LayoutJob> {
    let stream = g.streams.get(idx)?;
    let (all, scale) = tint_values(g);
    let values = all.get(idx)?;
    let font = egui::TextStyle::Body.resolve(ui.style());
    let color = ui.visuals().text_color();
    let mut job = egui::text::LayoutJob::default();
    job.wrap.max_width = ui.available_width();
    for (i, (token, v)) in stream.tokens.iter().zip(values).enumerate() {
        let token = if i == 0 {
            token.trim_start()
        } else {
            token.as_str()
        };
        job.append(
            token,
            0.0,
            egui::TextFormat {
                font_id: font.clone(),
                color,
                background: diverging(*v, scale, 0.55),
                ..egui::TextFormat::default()
            },
        );
    }
    Some(job)
}
