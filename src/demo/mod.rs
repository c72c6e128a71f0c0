//! The embedded demo model: a small Llama-architecture chat model that refuses harmful requests,
//! trained by steerscope itself from a generated corpus, and its over-refusal rounds.
//!
//! `train_demo` writes an HF folder (`config.json`, `model.safetensors`, `tokenizer.json`,
//! `tokenizer_config.json`), the held-out prompt lists, and `rounds/round-NN/` checkpoints in
//! bf16, and measures every checkpoint on the held-out prompts.

pub mod corpus;
pub mod tokenizer;
pub mod train;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};

use crate::error::{Error, Result};
use crate::model::{Model, ModelConfig};
use crate::rng::Rng;
use crate::steer::eval::{refusal_rate, EvalOptions};
use corpus::{Corpus, Example, RoundMix};
use train::{Arch, Batcher, Phase};

/// Everything that decides the demo model. The defaults are what `assets/demo-model` was
/// trained with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoOptions {
    pub seed: u64,
    pub arch: Arch,
    /// Upper bound for the BPE vocabulary (the trained one may be smaller).
    pub max_vocab: usize,
    pub batch_size: usize,
    pub round0_steps: usize,
    pub round0_lr: f64,
    pub n_rounds: usize,
    pub round_steps: usize,
    pub round_lr: f64,
    /// Keep (and measure) every `keep_every`-th round.
    pub keep_every: usize,
    /// Share of harmful prompts in each batch.
    pub harmful_share: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: 20_241_204,
            arch: Arch {
                hidden_size: 96,
                n_layers: 6,
                n_heads: 4,
                n_kv_heads: 2,
                intermediate_size: 256,
                vocab_size: 0,
                context_len: 256,
            },
            max_vocab: 1024,
            batch_size: 32,
            round0_steps: 600,
            round0_lr: 3e-3,
            n_rounds: 20,
            round_steps: 30,
            round_lr: 1e-3,
            keep_every: 2,
            harmful_share: 0.3,
        }
    }
}

/// Measurements of one checkpoint on the held-out prompts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointReport {
    pub round: usize,
    pub path: PathBuf,
    pub mix: RoundMix,
    pub mean_loss: f32,
    pub harmful_refusal: f64,
    pub harmless_refusal: f64,
    pub harmless_imperative_refusal: f64,
    pub harmless_question_refusal: f64,
}

/// The shipped demo model: `assets/demo-model` under the working directory when it is there
/// (a checkout), else under the source tree steerscope was built from.
#[must_use]
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from("assets/demo-model");
    if local.join("config.json").is_file() {
        local
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model")
    }
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::invalid("json", e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

fn write_prompts(path: &Path, examples: &[Example], harmful: bool) -> Result<()> {
    let rows: Vec<serde_json::Value> = examples
        .iter()
        .filter(|e| e.harmful == harmful)
        .map(|e| {
            serde_json::json!({
                "instruction": e.prompt,
                "category": e.family,
                "subject": e.subject,
                "imperative": e.imperative,
            })
        })
        .collect();
    write_json(path, &serde_json::Value::Array(rows))
}

/// The texts the tokenizer is trained on: every training prompt and every answer wording.
fn tokenizer_texts(train: &[Example], seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut texts = Vec::with_capacity(train.len() * 4);
    for ex in train {
        texts.push(ex.prompt.clone());
        for _ in 0..2 {
            texts.push(corpus::response(ex, false, &mut rng));
        }
    }
    texts.extend(corpus::REFUSALS.iter().map(|s| (*s).to_owned()));
    texts
}

/// Write one checkpoint folder (config, tokenizer, weights in `dtype`).
fn write_checkpoint(
    dir: &Path,
    arch: &Arch,
    tok: &tokenizers::Tokenizer,
    varmap: &candle_nn::VarMap,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_json(&dir.join("config.json"), &arch.hf_config())?;
    tokenizer::save(tok, dir)?;
    train::save_weights(varmap, &dir.join("model.safetensors"), dtype)
}

/// Load a written checkpoint and measure it on the held-out prompts.
fn measure(
    dir: &Path,
    round: usize,
    mix: RoundMix,
    losses: &[f32],
    test: &[Example],
) -> Result<CheckpointReport> {
    let model = Model::load_hf(dir, &Device::Cpu)?;
    let opts = EvalOptions {
        max_new_tokens: 8,
        ..EvalOptions::default()
    };
    let harmful: Vec<String> = test
        .iter()
        .filter(|e| e.harmful)
        .map(|e| e.prompt.clone())
        .collect();
    let harmless: Vec<&Example> = test.iter().filter(|e| !e.harmful).collect();
    let harmless_prompts: Vec<String> = harmless.iter().map(|e| e.prompt.clone()).collect();
    let harmful_rate = refusal_rate(&model, &harmful, &opts)?.rate();
    let judged = refusal_rate(&model, &harmless_prompts, &opts)?;
    // Split the harmless rate by phrasing (judged comes back in prompt order).
    let split = |imperative: bool| {
        let (n, refused) = judged
            .judged
            .iter()
            .zip(&harmless)
            .filter(|(_, e)| e.imperative == imperative)
            .fold((0usize, 0usize), |(n, r), (j, _)| {
                (n + 1, r + usize::from(j.refused))
            });
        refused as f64 / n.max(1) as f64
    };
    let tail = &losses[losses.len().saturating_sub(20)..];
    Ok(CheckpointReport {
        round,
        path: dir.to_path_buf(),
        mix,
        mean_loss: tail.iter().sum::<f32>() / tail.len().max(1) as f32,
        harmful_refusal: harmful_rate,
        harmless_refusal: judged.rate(),
        harmless_imperative_refusal: split(true),
        harmless_question_refusal: split(false),
    })
}

/// Train the demo model and its rounds into `out_dir`. `log` sees one line per event.
pub fn train_demo(
    out_dir: &Path,
    opts: &DemoOptions,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<CheckpointReport>> {
    let start = Instant::now();
    let dev = Device::Cpu;
    let corpus = Corpus::generate(opts.seed);
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let tok = tokenizer::train(&tokenizer_texts(&corpus.train, opts.seed), opts.max_vocab)?;
    let mut arch = opts.arch;
    arch.vocab_size = tok.get_vocab_size(true);
    log(&format!(
        "corpus: {} training prompts, {} held out; tokenizer: {} tokens",
        corpus.train.len(),
        corpus.test.len(),
        arch.vocab_size
    ));
    let prompts_dir = out_dir.join("prompts");
    std::fs::create_dir_all(&prompts_dir).map_err(|e| Error::io(&prompts_dir, e))?;
    for (name, set, harmful) in [
        ("harmful_train.json", &corpus.train, true),
        ("harmless_train.json", &corpus.train, false),
        ("harmful_test.json", &corpus.test, true),
        ("harmless_test.json", &corpus.test, false),
    ] {
        write_prompts(&prompts_dir.join(name), set, harmful)?;
    }
    write_json(&out_dir.join("config.json"), &arch.hf_config())?;
    let cfg = ModelConfig::from_hf_json(&out_dir.join("config.json"))?;
    let varmap = train::init_varmap(&arch, opts.seed, &dev)?;
    let tf = train::transformer(&varmap, &cfg, &dev)?;
    let batcher = Batcher::new(tok.clone(), &corpus.train, arch.context_len)?;
    let mut opt = train::optimizer(&varmap, opts.round0_lr)?;
    let mut rng = Rng::new(opts.seed ^ 0x5EED);
    let mut reports = Vec::new();

    // Round 0 and the drift rounds differ only in mix, length, learning rate and decay.
    let phase = |mix: RoundMix, steps: usize, lr: f64, decay: bool| Phase {
        examples: &corpus.train,
        mix,
        steps,
        batch_size: opts.batch_size,
        lr,
        decay,
        harmful_share: opts.harmful_share,
    };
    let mix = RoundMix::for_round(0);
    let losses = train::run_phase(
        &tf,
        &mut opt,
        &batcher,
        &phase(mix, opts.round0_steps, opts.round0_lr, true),
        &mut rng,
        &mut |step, loss| {
            if step % 50 == 0 {
                log(&format!(
                    "round 0 step {step}: loss {loss:.3} ({:.0} s)",
                    start.elapsed().as_secs_f64()
                ));
            }
        },
    )?;
    write_checkpoint(out_dir, &arch, &tok, &varmap, DType::F32)?;
    let r = measure(out_dir, 0, mix, &losses, &corpus.test)?;
    log(&report_line(&r, start));
    reports.push(r);

    for round in 1..=opts.n_rounds {
        let mix = RoundMix::for_round(round);
        let losses = train::run_phase(
            &tf,
            &mut opt,
            &batcher,
            &phase(mix, opts.round_steps, opts.round_lr, false),
            &mut rng,
            &mut |_, _| {},
        )?;
        if round % opts.keep_every.max(1) == 0 {
            let dir = out_dir.join("rounds").join(format!("round-{round:02}"));
            write_checkpoint(&dir, &arch, &tok, &varmap, DType::BF16)?;
            let r = measure(&dir, round, mix, &losses, &corpus.test)?;
            log(&report_line(&r, start));
            reports.push(r);
        }
    }
    let summary = serde_json::json!({
        "options": opts,
        "arch": arch,
        "train_seconds": start.elapsed().as_secs_f64(),
        "checkpoints": reports,
    });
    write_json(&out_dir.join("training.json"), &summary)?;
    Ok(reports)
}

fn report_line(r: &CheckpointReport, start: Instant) -> String {
    format!(
        "round {:>2} (imperative share {:.2}, question share {:.2}): loss {:.3}, harmful refusal {:.0}%, harmless refusal {:.0}% (imperative {:.0}%, question {:.0}%) [{:.0} s]",
        r.round,
        r.mix.imperative,
        r.mix.question,
        r.mean_loss,
        100.0 * r.harmful_refusal,
        100.0 * r.harmless_refusal,
        100.0 * r.harmless_imperative_refusal,
        100.0 * r.harmless_question_refusal,
        start.elapsed().as_secs_f64()
    )
}
