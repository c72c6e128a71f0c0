//! The prompt box, the example prompts, and Generate / Cancel.

use super::top_bar::error_banner;
use super::{Intent, Runtime, Settings};
use crate::worker::{Site, EXAMPLE_PROMPTS};

pub fn prompt_panel_ui(ui: &mut egui::Ui, s: &mut Settings, rt: &Runtime) -> Vec<Intent> {
    let mut intents = Vec::new();
    ui.horizontal_wrapped(|ui| {
        ui.label("Examples:");
        for example in EXAMPLE_PROMPTS {
            if ui.small_button(example).clicked() {
                example.clone_into(&mut s.prompt);
                intents.push(Intent::Generate);
            }
        }
    });
    ui.add(
        egui::TextEdit::multiline(&mut s.prompt)
            .hint_text("A user message (the chat template is applied)")
            .desired_rows(2)
            .desired_width(f32::INFINITY),
    );
    ui.horizontal(|ui| {
        let ready = rt.model.is_some() && rt.vector.is_some() && rt.loading.is_none();
        if ui
            .add_enabled(ready, egui::Button::new("Generate"))
            .on_hover_text("Ctrl+Enter")
            .clicked()
        {
            intents.push(Intent::Generate);
        }
        let busy = rt.generating || rt.long_job.is_some();
        if ui
            .add_enabled(busy, egui::Button::new("Cancel"))
            .on_hover_text("Esc")
            .clicked()
        {
            intents.push(Intent::Cancel);
        }
        ui.checkbox(&mut s.chat, "Chat template");
        if rt.generating {
            ui.spinner();
        } else if let Some(g) = &rt.generation {
            let tokens: usize = g.streams.iter().map(|s| s.tokens.len()).sum();
            ui.label(
                egui::RichText::new(format!(
                    "{} prompt tokens · {tokens} generated",
                    g.prompt_tokens.len()
                ))
                .weak(),
            )
            .on_hover_text(format!(
                "prefill {:.0} ms · decode {:.0} ms",
                g.prefill_ms, g.decode_ms
            ));
        }
    });
    if let Some(g) = &rt.generation {
        egui::CollapsingHeader::new("As the model saw it")
            .id_salt("rendered_prompt")
            .default_open(false)
            .show(ui, |ui| {
                ui.label(
                    egui::RichText::new(format!(
                        "The last request's prompt after the chat template, {} tokens:",
                        g.prompt_tokens.len()
                    ))
                    .weak(),
                );
                ui.add(
                    egui::Label::new(egui::RichText::new(g.prompt_tokens.concat()).monospace())
                        .wrap(),
                );
            });
    }
    if let Some(i) = error_banner(ui, rt, Site::Generate) {
        intents.push(i);
    }
    intents
}
