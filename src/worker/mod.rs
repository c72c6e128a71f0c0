//! The model worker: one named thread owns the model; the UI talks to it through bounded
//! channels and never blocks (rerun's command sender, DESIGN.md rule 3).
//!
//! - Commands go in with `try_send`; a full queue is reported, not waited on.
//! - Every event is followed by a wake-up call (the UI's `request_repaint`).
//! - A new generation cancels the running one (its [`CancelFlag`] is set) and the worker skips
//!   queued generations whose flag is already set, so only the newest request runs.
//! - A panic on the worker is caught, reported as [`Event::Panicked`], and the thread stops;
//!   [`WorkerHandle::restart`] starts a fresh one, which the app then asks to reload the model.

mod jobs;
mod protocol;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

pub use jobs::EXAMPLE_PROMPTS;
use jobs::{Outbox, WorkerState};
pub use protocol::{
    CancelFlag, Command, Event, GenerateParams, Generation, JobId, LayerPlots, Mode, ModelFacts,
    MonitorParams, Site, StreamKind, StreamResult, SweepParams, VectorFacts,
};

/// Commands waiting at most; generations are coalesced, so this is never reached in use.
const COMMAND_QUEUE: usize = 64;
/// Events waiting at most before the worker waits for the UI to drain them.
const EVENT_QUEUE: usize = 4096;

/// The UI's side of the worker.
pub struct WorkerHandle {
    tx: Sender<Command>,
    rx: Receiver<Event>,
    wake: Arc<dyn Fn() + Send + Sync>,
    thread: Option<JoinHandle<()>>,
    next_job: JobId,
    /// The newest generation's id and flag.
    generation: Option<(JobId, CancelFlag)>,
    /// The newest long job's (sweep, monitor) id and flag.
    long_job: Option<(JobId, CancelFlag)>,
    restarts: usize,
}

impl WorkerHandle {
    /// Start the worker thread. `wake` is called after every event (pass the UI's
    /// `request_repaint`).
    #[must_use]
    pub fn spawn(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        let (tx, rx, thread) = start(&wake);
        Self {
            tx,
            rx,
            wake,
            thread,
            next_job: 1,
            generation: None,
            long_job: None,
            restarts: 0,
        }
    }

    /// Replace a stopped (panicked) worker with a fresh one, with no model loaded.
    pub fn restart(&mut self) {
        let (tx, rx, thread) = start(&self.wake);
        self.tx = tx;
        self.rx = rx;
        if let Some(old) = std::mem::replace(&mut self.thread, thread) {
            let _ = old.join();
        }
        self.generation = None;
        self.long_job = None;
        self.restarts += 1;
    }

    /// How many times the worker was restarted.
    #[must_use]
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    /// Send a command without waiting.
    pub fn send(&self, cmd: Command) -> Result<(), String> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => {
                "the model worker is busy (its queue is full); try again".into()
            }
            TrySendError::Disconnected(_) => "the model worker has stopped".into(),
        })
    }

    fn new_job(&mut self) -> (JobId, CancelFlag) {
        let job = self.next_job;
        self.next_job += 1;
        (job, Arc::new(AtomicBool::new(false)))
    }

    /// Start a generation; the running one (if any) is cancelled.
    pub fn generate(&mut self, params: GenerateParams) -> Result<JobId, String> {
        self.cancel_generation();
        let (job, cancel) = self.new_job();
        self.generation = Some((job, cancel.clone()));
        self.send(Command::Generate {
            job,
            cancel,
            params,
        })?;
        Ok(job)
    }

    /// Cancel the running generation, if any.
    pub fn cancel_generation(&mut self) {
        if let Some((_, flag)) = &self.generation {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// The newest generation's id.
    #[must_use]
    pub fn current_generation(&self) -> Option<JobId> {
        self.generation.as_ref().map(|(job, _)| *job)
    }

    /// Start a long job (one at a time): the running one is cancelled.
    fn start_long_job(
        &mut self,
        command: impl FnOnce(JobId, CancelFlag) -> Command,
    ) -> Result<JobId, String> {
        self.cancel_long_job();
        let (job, cancel) = self.new_job();
        self.long_job = Some((job, cancel.clone()));
        self.send(command(job, cancel))?;
        Ok(job)
    }

    /// Start a sweep; a running sweep or monitor is cancelled.
    pub fn sweep(&mut self, params: SweepParams) -> Result<JobId, String> {
        self.start_long_job(|job, cancel| Command::Sweep {
            job,
            cancel,
            params,
        })
    }

    /// Start the checkpoint monitor; a running sweep or monitor is cancelled.
    pub fn monitor(&mut self, params: MonitorParams) -> Result<JobId, String> {
        self.start_long_job(|job, cancel| Command::Monitor {
            job,
            cancel,
            params,
        })
    }

    /// Start a vector extraction (not cancellable: it writes a file when done).
    pub fn extract(&mut self, extract: crate::vector::ExtractJob) -> Result<JobId, String> {
        let (job, _) = self.new_job();
        self.send(Command::ExtractVector { job, extract })?;
        Ok(job)
    }

    /// Cancel a running sweep or monitor, if any.
    pub fn cancel_long_job(&mut self) {
        if let Some((_, flag)) = &self.long_job {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// The next event, if one is waiting. Never blocks. A worker that stopped without saying
    /// why (its thread ended) is reported as [`Event::Panicked`] once.
    pub fn try_recv(&mut self) -> Option<Event> {
        match self.rx.try_recv() {
            Ok(ev) => Some(ev),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                // Report once, then stay quiet until restarted.
                let (_, rx) = bounded(1);
                self.rx = rx;
                Some(Event::Panicked {
                    message: "the model worker stopped".into(),
                })
            }
        }
    }
}

fn start(
    wake: &Arc<dyn Fn() + Send + Sync>,
) -> (Sender<Command>, Receiver<Event>, Option<JoinHandle<()>>) {
    let (cmd_tx, cmd_rx) = bounded::<Command>(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = bounded::<Event>(EVENT_QUEUE);
    let out = Outbox {
        tx: ev_tx.clone(),
        wake: wake.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("steerscope-model".into())
        .spawn(move || run(&cmd_rx, &out));
    match thread {
        Ok(handle) => (cmd_tx, ev_rx, Some(handle)),
        Err(e) => {
            let _ = ev_tx.try_send(Event::Failed {
                job: None,
                site: Site::Model,
                message: format!("cannot start the model worker thread: {e}"),
            });
            wake();
            (cmd_tx, ev_rx, None)
        }
    }
}

fn run(rx: &Receiver<Command>, out: &Outbox) {
    let mut state = WorkerState::default();
    while let Ok(cmd) = rx.recv() {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handle(&mut state, cmd, out);
        }));
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            out.send(Event::Panicked { message });
            // The model may be half-updated: stop; the app restarts a fresh worker.
            return;
        }
    }
}

fn handle(state: &mut WorkerState, cmd: Command, out: &Outbox) {
    match cmd {
        Command::LoadModel { spec, device } => state.load_model(&spec, &device, out),
        Command::LoadVector { path } => state.load_vector(&path, out),
        Command::ExtractVector { job, extract } => state.extract(job, &extract, out),
        Command::Generate {
            job,
            cancel,
            params,
        } => {
            // Superseded before it started: skip it (no backlog of stale requests).
            if cancel.load(Ordering::Relaxed) {
                out.send(Event::Cancelled { job });
            } else {
                state.generate(job, &cancel, &params, out);
            }
        }
        Command::Sweep {
            job,
            cancel,
            params,
        } => state.sweep(job, &cancel, &params, out),
        Command::Monitor {
            job,
            cancel,
            params,
        } => state.monitor(job, &cancel, &params, out),
        Command::Panic => panic!("panic requested on the model worker"),
    }
}
