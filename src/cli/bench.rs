//! `steerscope bench`: decode speed of the instrumented forward against candle-transformers'
//! stock `quantized_llama`, measured in one run so the ratios hold on a noisy machine.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, IndexOp, Tensor};
use clap::Args;

use steerscope::hooks::{Scope, Steering, TraceSpec};
use steerscope::model::{ForwardArgs, KvCache, Model};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A .gguf model (the stock reference reads GGUF).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    /// Tokens to decode per measurement.
    #[arg(long, default_value_t = 128)]
    pub tokens: usize,
    /// Repetitions of each measurement (the fastest is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long, default_value = "Write a story about a chef cooking pasta")]
    pub prompt: String,
}

struct Timing {
    prefill_ms: f64,
    per_token_ms: f64,
}

fn best(runs: &[Timing]) -> Timing {
    let prefill_ms = runs
        .iter()
        .map(|r| r.prefill_ms)
        .fold(f64::INFINITY, f64::min);
    let per_token_ms = runs
        .iter()
        .map(|r| r.per_token_ms)
        .fold(f64::INFINITY, f64::min);
    Timing {
        prefill_ms,
        per_token_ms,
    }
}

fn argmax_rows(logits: &Tensor) -> anyhow::Result<Vec<u32>> {
    Ok(logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?)
}

/// Greedy decode with our forward; `batch` copies of the prompt, each with its steering.
fn ours(
    model: &Model,
    ids: &[u32],
    n: usize,
    steering: &[Steering],
    trace: Option<&TraceSpec>,
    batch: usize,
) -> anyhow::Result<Timing> {
    let tf = &model.transformer;
    let dev = tf.device();
    let mut cache = KvCache::new(tf.cfg.n_layers);
    let args = ForwardArgs {
        steering,
        trace,
        prompt_len: ids.len(),
        all_logits: false,
        ..ForwardArgs::default()
    };
    let t0 = Instant::now();
    let input = Tensor::from_vec(ids.repeat(batch), (batch, ids.len()), dev)?;
    let mut next = argmax_rows(&tf.forward(&input, &mut cache, &args)?.logits)?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    for _ in 0..n {
        let input = Tensor::from_vec(next.clone(), (batch, 1), dev)?;
        next = argmax_rows(&tf.forward(&input, &mut cache, &args)?.logits)?;
    }
    Ok(Timing {
        prefill_ms,
        per_token_ms: t1.elapsed().as_secs_f64() * 1e3 / n as f64,
    })
}

fn stock(path: &PathBuf, ids: &[u32], n: usize) -> anyhow::Result<Timing> {
    let mut file = std::fs::File::open(path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let mut m = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )?;
    let t0 = Instant::now();
    let input = Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?;
    let logits = m.forward(&input, 0)?;
    let mut next = logits.i(0)?.argmax(0)?.to_scalar::<u32>()?;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    for i in 0..n {
        let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
        let logits = m.forward(&input, ids.len() + i)?;
        next = logits.i(0)?.argmax(0)?.to_scalar::<u32>()?;
    }
    Ok(Timing {
        prefill_ms,
        per_token_ms: t1.elapsed().as_secs_f64() * 1e3 / n as f64,
    })
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<()> {
    let model = Model::load_gguf(&a.model, &Device::Cpu)?;
    let ids = model.encode_chat(&a.prompt)?;
    let cfg = model.cfg();
    let dir = Tensor::randn(0f32, 1f32, cfg.hidden_size, &Device::Cpu)?;
    let steered = Steering::add(cfg.n_layers / 2, dir.clone(), 4.0, Scope::All);
    let trace = TraceSpec {
        directions: vec![dir],
        summaries: true,
        capture: vec![],
    };
    let n = a.tokens;
    let reps = a.repeats.max(1);
    let mut s_stock = vec![];
    let mut s_plain = vec![];
    let mut s_trace = vec![];
    let mut s_pair = vec![];
    let pair = [Steering::default(), steered];
    // Interleave the variants so drift on a shared machine hits all of them alike.
    for _ in 0..reps {
        s_stock.push(stock(&a.model, &ids, n)?);
        s_plain.push(ours(&model, &ids, n, &[], None, 1)?);
        s_trace.push(ours(&model, &ids, n, &[], Some(&trace), 1)?);
        s_pair.push(ours(&model, &ids, n, &pair, None, 2)?);
    }
    let (st, pl, tr, pa) = (
        best(&s_stock),
        best(&s_plain),
        best(&s_trace),
        best(&s_pair),
    );
    println!(
        "model: {} ({} prompt tokens, {} decoded tokens, best of {reps})",
        a.model.display(),
        ids.len(),
        n
    );
    println!("build: {}", build_flags());
    println!(
        "{:<44} {:>12} {:>10} {:>12} {:>8}",
        "variant", "ms/token", "tok/s", "prefill ms", "ratio"
    );
    let row = |name: &str, t: &Timing| {
        println!(
            "{name:<44} {:>12.2} {:>10.1} {:>12.1} {:>7.2}x",
            t.per_token_ms,
            1e3 / t.per_token_ms,
            t.prefill_ms,
            t.per_token_ms / st.per_token_ms
        );
    };
    row("candle quantized_llama (stock, 1 stream)", &st);
    row("steerscope, no hooks (1 stream)", &pl);
    row("steerscope, full per-layer trace (1 stream)", &tr);
    row("steerscope, unsteered+steered batched (2)", &pa);
    Ok(())
}

fn build_flags() -> String {
    let mut f = vec![if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }];
    if cfg!(target_feature = "avx2") {
        f.push("avx2");
    }
    if cfg!(target_feature = "fma") {
        f.push("fma");
    }
    if cfg!(target_feature = "f16c") {
        f.push("f16c");
    }
    f.join("+")
}
