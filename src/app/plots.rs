//! The plots panel: per-layer norms, attention and MLP contributions onto the direction, the
//! token x layer projection heatmap, and the sweep and monitor results.

use egui_plot::{Bar, BarChart, Legend, Line, LineStyle, Plot, PlotPoints, Points, VLine};

use super::generations::diverging;
use super::top_bar::error_banner;
use super::{Intent, PlotTab, Runtime, Settings};
use crate::worker::{Generation, Site, StreamKind};

/// Colour per stream kind, the same in every plot.
fn stream_color(kind: StreamKind) -> egui::Color32 {
    match kind {
        StreamKind::Unsteered => egui::Color32::from_rgb(110, 160, 230),
        StreamKind::Steered => egui::Color32::from_rgb(235, 110, 70),
        StreamKind::Ablated => egui::Color32::from_rgb(120, 200, 120),
    }
}

fn stream_name(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Unsteered => "unsteered",
        StreamKind::Steered => "steered",
        StreamKind::Ablated => "ablated",
    }
}

pub fn plots_panel_ui(
    ui: &mut egui::Ui,
    s: &mut Settings,
    rt: &Runtime,
    n_checkpoints: usize,
) -> Vec<Intent> {
    let mut intents = Vec::new();
    egui::Panel::bottom("plots")
        .resizable(true)
        .default_size(340.0)
        .min_size(240.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                for tab in PlotTab::ALL {
                    ui.selectable_value(&mut s.plot_tab, tab, tab.label());
                }
            });
            ui.separator();
            match s.plot_tab {
                PlotTab::Norms => with_generation(ui, rt, norms_plot),
                PlotTab::Contributions => with_generation(ui, rt, contributions_plot),
                PlotTab::Projection => with_generation(ui, rt, heatmap),
                PlotTab::Sweep => sweep_ui(ui, s, rt, &mut intents),
                PlotTab::Monitor => monitor_ui(ui, s, rt, n_checkpoints, &mut intents),
            }
        });
    intents
}

fn with_generation(ui: &mut egui::Ui, rt: &Runtime, f: fn(&mut egui::Ui, &Generation)) {
    match &rt.generation {
        Some(g) if g.plots.n_layers > 0 => f(ui, g),
        _ => {
            ui.label("Generate to see this plot.");
        }
    }
}

fn layer_points(values: &[f32]) -> PlotPoints<'static> {
    values
        .iter()
        .enumerate()
        .map(|(l, v)| [l as f64, f64::from(*v)])
        .collect()
}

/// 1. Per-layer norms of the residual stream and of the attention and MLP outputs, per stream,
///    with the steered layer marked.
fn norms_plot(ui: &mut egui::Ui, g: &Generation) {
    ui.label(
        egui::RichText::new(
            "Mean L2 norm over tokens (but the first), per layer: residual (solid), attention out (dashed), MLP out (dotted)",
        )
        .weak(),
    );
    let p = &g.plots;
    Plot::new("norms")
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
        .x_axis_label("layer")
        .y_axis_label("L2 norm")
        .allow_scroll(false)
        .show(ui, |plot| {
            for (row, stream) in g.streams.iter().enumerate() {
                let color = stream_color(stream.kind);
                let name = stream_name(stream.kind);
                let series = [
                    (&p.resid_norm, "residual", LineStyle::Solid),
                    (&p.attn_norm, "attn out", LineStyle::dashed_loose()),
                    (&p.mlp_norm, "mlp out", LineStyle::dotted_dense()),
                ];
                for (values, what, style) in series {
                    if let Some(v) = values.get(row) {
                        plot.line(
                            Line::new(format!("{name} {what}"), layer_points(v))
                                .color(color)
                                .style(style)
                                .width(2.0),
                        );
                    }
                }
            }
            if g.streams.iter().any(|s| s.kind == StreamKind::Steered) {
                plot.vline(
                    VLine::new("steered layer", g.params.layer_idx as f64)
                        .color(egui::Color32::from_gray(150))
                        .style(LineStyle::dashed_dense()),
                );
            }
        });
}

/// 2. What attention and the MLP of each layer write along the direction (mean projection of
///    their outputs over tokens), unsteered stream.
fn contributions_plot(ui: &mut egui::Ui, g: &Generation) {
    let p = &g.plots;
    ui.label(
        egui::RichText::new(format!(
            "Mean projection of each layer's attention and MLP output onto the direction (layer {}'s vector), unsteered stream",
            p.direction_layer
        ))
        .weak(),
    );
    let bars = |values: Option<&Vec<f32>>, offset: f64| -> Vec<Bar> {
        values
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(l, v)| Bar::new(l as f64 + offset, f64::from(*v)).width(0.38))
            .collect()
    };
    Plot::new("contributions")
        .legend(Legend::default())
        .x_axis_label("layer")
        .y_axis_label("projection")
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.bar_chart(
                BarChart::new("attention", bars(p.attn_contrib.first(), -0.2))
                    .color(egui::Color32::from_rgb(150, 110, 220)),
            );
            plot.bar_chart(
                BarChart::new("MLP", bars(p.mlp_contrib.first(), 0.2))
                    .color(egui::Color32::from_rgb(230, 170, 60)),
            );
        });
}

/// 3. Projection of the residual stream onto the direction, token x layer, for each stream;
///    hover shows the token, layer and value.
fn heatmap(ui: &mut egui::Ui, g: &Generation) {
    let p = &g.plots;
    ui.label(
        egui::RichText::new(format!(
            "Projection of blocks.L.hook_resid_post onto the direction (layer {}'s vector): rows are layers (0 at the top), columns tokens; the line marks the end of the prompt; the first token saturates",
            p.direction_layer
        ))
        .weak(),
    );
    let rows = g.streams.len();
    let available = ui.available_size();
    let block_h = ((available.y - 8.0) / rows as f32).max(30.0);
    // One cell width for every stream, so the columns line up across streams.
    let max_tokens = p
        .resid_proj
        .iter()
        .filter_map(|grid| grid.first().map(Vec::len))
        .max()
        .unwrap_or(1)
        .max(1);
    let label_w = 80.0;
    let cell_w = ((available.x - label_w - 8.0) / max_tokens as f32).clamp(4.0, 24.0);
    egui::ScrollArea::horizontal().show(ui, |ui| {
        for (row, stream) in g.streams.iter().enumerate() {
            let Some(grid) = p.resid_proj.get(row) else {
                continue;
            };
            let n_tokens = grid.first().map_or(0, Vec::len);
            if n_tokens == 0 {
                continue;
            }
            // The colour scale leaves out the first token, whose outsized activations (the
            // attention sink) would wash out every other cell; it saturates instead.
            let skip = usize::from(n_tokens > 1);
            let scale = grid
                .iter()
                .flat_map(|row| row.iter().skip(skip))
                .fold(0f32, |m, v| m.max(v.abs()));
            let size = egui::vec2(label_w + cell_w * n_tokens as f32, block_h - 6.0);
            let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
            let painter = ui.painter_at(rect);
            painter.text(
                rect.left_center(),
                egui::Align2::LEFT_CENTER,
                stream_name(stream.kind),
                egui::FontId::proportional(12.0),
                stream_color(stream.kind),
            );
            let cell_h = rect.height() / p.n_layers as f32;
            let origin = rect.left_top() + egui::vec2(label_w, 0.0);
            let weak = ui.visuals().weak_text_color();
            for (l, align) in [
                (0, egui::Align2::RIGHT_TOP),
                (p.n_layers - 1, egui::Align2::RIGHT_BOTTOM),
            ] {
                let y = if l == 0 { rect.top() } else { rect.bottom() };
                painter.text(
                    egui::pos2(origin.x - 4.0, y),
                    align,
                    format!("L{l}"),
                    egui::FontId::proportional(10.0),
                    weak,
                );
            }
            for (l, values) in grid.iter().enumerate() {
                for (t, v) in values.iter().enumerate() {
                    let min = origin + egui::vec2(t as f32 * cell_w, l as f32 * cell_h);
                    painter.rect_filled(
                        egui::Rect::from_min_size(min, egui::vec2(cell_w, cell_h)),
                        0.0,
                        diverging(*v, scale, 1.0),
                    );
                }
            }
            let prompt_end = origin.x + g.prompt_tokens.len() as f32 * cell_w;
            painter.vline(
                prompt_end,
                rect.y_range(),
                egui::Stroke::new(1.5, ui.visuals().text_color()),
            );
            if let Some(pos) = response.hover_pos() {
                let t = ((pos.x - origin.x) / cell_w).floor();
                let l = ((pos.y - origin.y) / cell_h).floor();
                if t >= 0.0 && l >= 0.0 {
                    let (t, l) = (t as usize, l as usize);
                    if let Some(v) = grid.get(l).and_then(|r| r.get(t)) {
                        let token = g
                            .prompt_tokens
                            .get(t)
                            .or_else(|| stream.tokens.get(t - g.prompt_tokens.len().min(t)))
                            .map_or("?", String::as_str);
                        let part = if t < g.prompt_tokens.len() {
                            "prompt"
                        } else {
                            "generated"
                        };
                        response.on_hover_text(format!(
                            "token {t} ({part}): {token:?}\nlayer {l}\nprojection {v:+.3}"
                        ));
                    }
                }
            }
        }
    });
}

/// 4a. The refusal-rate sweep: rate against strength, one line per layer.
fn sweep_ui(ui: &mut egui::Ui, s: &mut Settings, rt: &Runtime, intents: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        let enabled = rt.model.is_some() && rt.vector.is_some() && rt.long_job.is_none();
        if ui
            .add_enabled(enabled, egui::Button::new("Run sweep"))
            .on_hover_text("Refusal rate on the harmless evaluation prompts, for 5 strengths from 0 to the slider range, at every layer")
            .clicked()
        {
            intents.push(Intent::RunSweep);
        }
        ui.add(egui::Slider::new(&mut s.eval_limit, 4..=300).text("prompts"));
        ui.add(
            egui::TextEdit::singleline(&mut s.eval_prompts)
                .hint_text("prompts: the model's harmless_test.json")
                .desired_width(260.0),
        );
    });
    if let Some(i) = error_banner(ui, rt, Site::Sweep) {
        intents.push(i);
    }
    let Some(sweep) = &rt.sweep else {
        ui.label("No sweep yet.");
        return;
    };
    if let Some(sug) = &sweep.suggestion {
        ui.label(format!(
            "Suggested: layer {} at strength {:.2} reaches {:.0}% refusal (KL {:.3}); baseline {:.0}%",
            sug.layer_idx,
            sug.strength,
            sug.refusal_rate * 100.0,
            sug.kl,
            sweep.baseline_rate * 100.0
        ));
    } else {
        ui.label(format!(
            "No setting reached {:.0}% refusal; baseline {:.0}%",
            sweep.target_rate * 100.0,
            sweep.baseline_rate * 100.0
        ));
    }
    Plot::new("sweep")
        .legend(Legend::default())
        .x_axis_label("strength")
        .y_axis_label("refusal rate")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for &layer in &sweep.layers {
                let pts: PlotPoints<'_> = sweep
                    .cells
                    .iter()
                    .filter(|c| c.layer_idx == Some(layer))
                    .map(|c| [c.strength, c.refusal_rate])
                    .collect();
                plot.line(Line::new(format!("layer {layer}"), pts).width(2.0));
            }
        });
}

/// 4b. The checkpoint monitor: projection and refusal rate per checkpoint.
fn monitor_ui(
    ui: &mut egui::Ui,
    s: &mut Settings,
    rt: &Runtime,
    n_checkpoints: usize,
    intents: &mut Vec<Intent>,
) {
    ui.horizontal(|ui| {
        let enabled =
            rt.model.is_some() && rt.vector.is_some() && rt.long_job.is_none() && n_checkpoints > 1;
        if ui
            .add_enabled(enabled, egui::Button::new("Run monitor"))
            .on_hover_text("The vector's projection (at the sidecar's monitor_layer) and the refusal rate at every checkpoint: the model folder and its rounds/*")
            .clicked()
        {
            intents.push(Intent::RunMonitor);
        }
        ui.label(if n_checkpoints > 1 {
            format!("{n_checkpoints} checkpoints (the model and its rounds/)")
        } else {
            "needs a model folder with rounds/round-NN checkpoints".to_owned()
        });
        ui.add(egui::Slider::new(&mut s.eval_limit, 4..=300).text("prompts"));
    });
    if let Some(i) = error_banner(ui, rt, Site::Monitor) {
        intents.push(i);
    }
    let Some((report, checkpoints)) = &rt.monitor else {
        ui.label("No monitor run yet.");
        return;
    };
    let r = report
        .pearson_r
        .map_or_else(|| "undefined".to_owned(), |r| format!("{r:.3}"));
    let alert = report.alert.as_ref().map_or_else(String::new, |a| {
        format!(" · alert at checkpoint {}", a.projection_checkpoint)
    });
    ui.label(format!(
        "Layer {} · Pearson r(projection, refusal rate) = {r}{alert}",
        report.layer_idx
    ));
    let names: Vec<String> = checkpoints
        .iter()
        .map(|c| super::top_bar::short_path(c))
        .collect();
    ui.columns(2, |cols| {
        Plot::new("monitor_rounds")
            .legend(Legend::default())
            .x_axis_label("checkpoint")
            .allow_scroll(false)
            .label_formatter(|hover| match hover {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => {
                    let i = position.x.round().max(0.0) as usize;
                    let ck = names.get(i).map_or("", String::as_str);
                    Some(format!("{plot_name}\n{ck}\n{:.3}", position.y))
                }
                egui_plot::HoverPosition::Elsewhere { .. } => None,
            })
            .show(&mut cols[0], |plot| {
                let proj: PlotPoints<'_> = report
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| [i as f64, r.projection])
                    .collect();
                let rate: PlotPoints<'_> = report
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| [i as f64, r.refusal_rate])
                    .collect();
                plot.line(Line::new("projection", proj).width(2.0));
                plot.line(Line::new("refusal rate", rate).width(2.0));
            });
        Plot::new("monitor_scatter")
            .x_axis_label("projection")
            .y_axis_label("refusal rate")
            .allow_scroll(false)
            .show(&mut cols[1], |plot| {
                let pts: PlotPoints<'_> = report
                    .rows
                    .iter()
                    .map(|r| [r.projection, r.refusal_rate])
                    .collect();
                plot.points(Points::new("checkpoints", pts).radius(4.0));
            });
    });
}
