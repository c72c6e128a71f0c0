//! The `steerscope` command line: argument parsing into library calls, and printing.

mod bench;
mod bench_ui;
mod monitor_cmd;
mod orthogonalize_cmd;
mod select_cmd;
mod steer;
mod sweep_cmd;
mod trace_cmd;
mod train_demo;
mod vector_cmd;

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use steerscope::hooks::Scope;
use steerscope::model::{parse_device, Model};
use steerscope::Error;

#[derive(Parser, Debug)]
#[command(
    name = "steerscope",
    version,
    about = "Look inside Llama-family language models while steering them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Unsteered and steered (and ablated) completions of one prompt, side by side.
    Steer(steer::SteerArgs),
    /// Plain chat generation.
    Generate(steer::GenerateArgs),
    /// Per-layer, per-token norms of the residual stream and of attention and MLP outputs,
    /// and their projections onto a direction.
    Trace(trace_cmd::TraceArgs),
    /// A steering vector from two contrastive prompt sets (mean difference at the last token).
    Vector(vector_cmd::VectorArgs),
    /// Score each layer's direction: refusal under addition (harmless) and ablation (harmful).
    Select(select_cmd::SelectArgs),
    /// A fixed direction's projection and the refusal rate across training checkpoints.
    Monitor(monitor_cmd::MonitorArgs),
    /// Refusal rate over strengths x layers (and ablation), with the KL cost of each setting.
    Sweep(sweep_cmd::SweepArgs),
    /// N seeded samples per prompt: the fraction refused and the samples until the first refusal.
    BestOfN(sweep_cmd::BestOfNArgs),
    /// A checkpoint whose weights cannot write the direction (Arditi et al.'s weight
    /// orthogonalization).
    Orthogonalize(orthogonalize_cmd::OrthogonalizeArgs),
    /// Train the embedded demo model and its over-refusal rounds (assets/demo-model).
    TrainDemo(train_demo::TrainDemoArgs),
    /// Open the desktop app (also what `steerscope` with no subcommand does).
    Gui(GuiArgs),
    /// The app's latency, headless: strength change to first steered token, and frame times.
    BenchUi(bench_ui::BenchUiArgs),
    /// Time decoding against candle-transformers' stock `quantized_llama` (GGUF models).
    Bench(bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct GuiArgs {
    /// A .gguf file, an HF model folder, or an HF cache repo id; default: the last model
    /// used, else the embedded demo model.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// A steering vector file for that model; default: the last one used with it, else the
    /// shipped one whose name matches the model.
    #[arg(long, short = 'v')]
    pub vector: Option<PathBuf>,
}

/// Check the files before a window opens: a missing path is one line on the terminal.
fn gui(a: GuiArgs) -> anyhow::Result<()> {
    if let Some(m) = &a.model {
        let p = std::path::Path::new(m);
        let looks_like_path = p.is_absolute()
            || m.starts_with('.')
            || p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if looks_like_path && !p.exists() {
            return Err(Error::MissingFile {
                path: p.to_path_buf(),
                expected: "a .gguf file or an HF model folder (--model)".into(),
            }
            .into());
        }
    }
    if let Some(v) = &a.vector {
        if !v.is_file() {
            return Err(Error::MissingFile {
                path: v.clone(),
                expected: "a steering vector file (--vector)".into(),
            }
            .into());
        }
    }
    steerscope::app::run(steerscope::app::Startup {
        model: a.model,
        vector: a.vector,
    })
}

/// Options every model-using command shares.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file, an HF model folder, or an HF cache repo id (resolved offline);
    /// default: the embedded demo model (assets/demo-model).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Expand GGUF weights to f32 at load: much faster batched work (vector, select, sweep)
    /// at four bytes per weight.
    #[arg(long)]
    pub dequantize: bool,
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<Model> {
        let device = parse_device(&self.device)?;
        let spec = self.model.clone().unwrap_or_else(|| {
            steerscope::demo::default_model_dir()
                .to_string_lossy()
                .into_owned()
        });
        Model::load_with(&spec, &device, self.dequantize).map_err(anyhow::Error::from)
    }
}

/// How refusal jobs read prompts and judge completions (select, sweep, best-of-n, monitor).
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Use only the first N prompts of each set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Tokens generated per completion before judging.
    #[arg(long, default_value_t = 8)]
    pub max_tokens: usize,
    /// Refusal substrings, one per line (default: the standard list: I'm sorry, I cannot, ...).
    #[arg(long)]
    pub refusal_substrings: Option<PathBuf>,
}

impl EvalArgs {
    /// A prompt list, cut to `--limit`.
    pub fn prompts(&self, path: &std::path::Path) -> anyhow::Result<Vec<String>> {
        let mut v = steerscope::extract::read_prompts(path)?;
        if let Some(n) = self.limit {
            v.truncate(n);
        }
        Ok(v)
    }

    pub fn options(&self) -> anyhow::Result<steerscope::steer::eval::EvalOptions> {
        let judge = match &self.refusal_substrings {
            Some(p) => steerscope::steer::judge::Judge::from_file(p)?,
            None => steerscope::steer::judge::Judge::default(),
        };
        Ok(steerscope::steer::eval::EvalOptions {
            max_new_tokens: self.max_tokens,
            judge,
            ..steerscope::steer::eval::EvalOptions::default()
        })
    }
}

/// Write a file the user asked for, naming it when that fails.
pub fn write_file(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}

/// A progress callback printing `\r{what}: done/total {unit}` on stderr.
pub fn progress(what: &'static str, unit: &'static str) -> impl FnMut(usize, usize) {
    let mut stderr = std::io::stderr();
    move |done, total| {
        let _ = write!(stderr, "\r{what}: {done}/{total} {unit}");
    }
}

/// The prompt, given inline or as a UTF-8 file.
#[derive(Args, Debug, Clone)]
pub struct PromptArgs {
    /// The user's message.
    #[arg(long, short = 'p', conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the user's message from a UTF-8 file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Feed the prompt as-is, without the chat template.
    #[arg(long)]
    pub raw: bool,
}

impl PromptArgs {
    pub fn text(&self) -> anyhow::Result<String> {
        match (&self.prompt, &self.prompt_file) {
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) => Ok(steerscope::extract::read_text(path)?),
            (None, None) => Err(Error::InvalidValue {
                name: "--prompt".into(),
                message: "missing (give --prompt TEXT or --prompt-file FILE)".into(),
            }
            .into()),
        }
    }

    pub fn ids(&self, model: &Model) -> anyhow::Result<Vec<u32>> {
        let text = self.text()?;
        let ids = if self.raw {
            model.encode(&text)?
        } else {
            model.encode_chat(&text)?
        };
        Ok(ids)
    }
}

pub fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse::<Scope>().map_err(|e| e.to_string())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => steerscope::app::run(steerscope::app::Startup::default()),
        Some(Command::Gui(a)) => gui(a),
        Some(Command::Steer(a)) => steer::steer(&a),
        Some(Command::Generate(a)) => steer::generate(&a),
        Some(Command::Trace(a)) => trace_cmd::trace(&a),
        Some(Command::Bench(a)) => bench::bench(&a),
        Some(Command::BenchUi(a)) => bench_ui::bench_ui(&a),
        Some(Command::Vector(a)) => vector_cmd::vector(&a),
        Some(Command::Monitor(a)) => monitor_cmd::monitor(&a),
        Some(Command::Sweep(a)) => sweep_cmd::sweep(&a),
        Some(Command::BestOfN(a)) => sweep_cmd::best_of_n_cmd(&a),
        Some(Command::Orthogonalize(a)) => orthogonalize_cmd::orthogonalize(&a),
        Some(Command::Select(a)) => select_cmd::select(&a),
        Some(Command::TrainDemo(a)) => train_demo::train_demo(&a),
    }
}
