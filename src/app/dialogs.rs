//! Native file dialogs (rfd) on their own thread, so the UI never waits on them.

use std::path::PathBuf;

use crossbeam_channel::{bounded, Receiver};

/// What a dialog picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    ModelFolder,
    ModelFile,
    VectorFile,
}

/// The open dialog, if any.
#[derive(Default)]
pub struct Dialogs {
    pending: Option<Receiver<(Pick, Option<PathBuf>)>>,
}

impl Dialogs {
    /// Open a dialog (one at a time); the result arrives through [`Dialogs::poll`].
    pub fn open(&mut self, ctx: &egui::Context, pick: Pick) {
        if self.pending.is_some() {
            return;
        }
        let (tx, rx) = bounded(1);
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("steerscope-dialog".into())
            .spawn(move || {
                let dialog = rfd::FileDialog::new();
                let picked = match pick {
                    Pick::ModelFolder => dialog.set_title("Open a model folder").pick_folder(),
                    Pick::ModelFile => dialog
                        .set_title("Open a GGUF model")
                        .add_filter("GGUF model", &["gguf"])
                        .pick_file(),
                    Pick::VectorFile => dialog
                        .set_title("Open a steering vector")
                        .add_filter(
                            "Steering vector",
                            &["safetensors", "gguf", "npy", "pt", "pth"],
                        )
                        .pick_file(),
                };
                let _ = tx.send((pick, picked));
                ctx.request_repaint();
            });
        if spawned.is_ok() {
            self.pending = Some(rx);
        }
    }

    /// The picked path, once the dialog closed with one.
    pub fn poll(&mut self) -> Option<(Pick, PathBuf)> {
        let rx = self.pending.as_ref()?;
        match rx.try_recv() {
            Ok((pick, path)) => {
                self.pending = None;
                path.map(|p| (pick, p))
            }
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.pending = None;
                None
            }
        }
    }
}
