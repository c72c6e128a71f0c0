//! Generation with a KV cache: one or several streams (unsteered, steered, ablated) of the same
//! prompt run as one batch, so the weights are read once per step for all of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, IndexOp, Tensor};
use candle_transformers::generation::LogitsProcessor;

use crate::error::{Error, Result};
use crate::hooks::{Steering, TraceSpec};
use crate::model::{ForwardArgs, KvCache, Model};
use crate::trace::TraceRecord;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sampling {
    /// 0 (or below 1e-7) = greedy.
    pub temperature: f64,
    /// Nucleus sampling threshold, used with a temperature.
    pub top_p: Option<f64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
        }
    }
}

/// One stream of a side-by-side generation.
#[derive(Debug, Clone, Default)]
pub struct StreamSpec {
    pub label: String,
    pub steering: Steering,
    /// Sampling seed for this stream.
    pub seed: u64,
}

/// A side-by-side generation job.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub streams: Vec<StreamSpec>,
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Summaries to record over prompt and generated tokens (each row is one stream).
    pub trace: Option<TraceSpec>,
}

/// Why a stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// End-of-turn or EOS token.
    EndOfTurn,
    MaxTokens,
    Cancelled,
}

/// One stream's output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamOutput {
    pub label: String,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
}

/// The result of a generation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateOutput {
    pub streams: Vec<StreamOutput>,
    pub prompt_len: usize,
    #[serde(skip)]
    pub trace: Option<TraceRecord>,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Decode steps run (each produces one token per unfinished stream).
    pub decode_steps: usize,
}

/// A piece of streamed output.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    pub stream_idx: usize,
    pub token_id: u32,
    /// New text since the last event of this stream (may be empty mid-character).
    pub text: &'a str,
}

struct StreamState {
    processor: LogitsProcessor,
    ids: Vec<u32>,
    emitted_len: usize,
    stop: Option<StopReason>,
}

/// Run a generation. `on_token` sees every token as it comes; `cancel` is checked between tokens.
pub fn generate(
    model: &Model,
    req: &GenerateRequest,
    cancel: &AtomicBool,
    on_token: &mut dyn FnMut(TokenEvent<'_>),
) -> Result<GenerateOutput> {
    let tf = &model.transformer;
    let batch = req.streams.len();
    if batch == 0 {
        return Err(Error::invalid(
            "streams",
            "none requested (expected at least one)",
        ));
    }
    let prompt_len = req.prompt_ids.len();
    if prompt_len == 0 {
        return Err(Error::invalid(
            "prompt",
            "it is empty (expected at least one token)",
        ));
    }
    if prompt_len + req.max_new_tokens > tf.cfg.context_len {
        return Err(Error::PromptTooLong {
            n_tokens: prompt_len,
            max_new_tokens: req.max_new_tokens,
            context_len: tf.cfg.context_len,
        });
    }
    let steering: Vec<Steering> = if req.streams.iter().all(|s| s.steering.is_empty()) {
        vec![]
    } else {
        req.streams.iter().map(|s| s.steering.clone()).collect()
    };
    let args = ForwardArgs {
        steering: &steering,
        trace: req.trace.as_ref(),
        prompt_len,
        all_logits: false,
        ..ForwardArgs::default()
    };
    let temperature = (req.sampling.temperature > 1e-7).then_some(req.sampling.temperature);
    let mut states: Vec<StreamState> = req
        .streams
        .iter()
        .map(|s| StreamState {
            processor: LogitsProcessor::new(s.seed, temperature, req.sampling.top_p),
            ids: Vec::new(),
            emitted_len: 0,
            stop: None,
        })
        .collect();

    let device = tf.device();
    let mut cache = KvCache::new(tf.cfg.n_layers);
    let prompt: Vec<u32> = req.prompt_ids.repeat(batch);
    let input = Tensor::from_vec(prompt, (batch, prompt_len), device)?;
    let t0 = Instant::now();
    let out = tf.forward(&input, &mut cache, &args)?;
    let mut logits = out.logits;
    let mut trace = out.trace;
    let prefill_ms = t0.elapsed().as_secs_f64() * 1e3;

    let t1 = Instant::now();
    let mut decode_steps = 0;
    for step in 0..req.max_new_tokens {
        let logits_f32 = logits.to_dtype(DType::F32)?;
        let mut next = Vec::with_capacity(batch);
        for (row, st) in states.iter_mut().enumerate() {
            if st.stop.is_some() {
                next.push(st.ids.last().copied().unwrap_or(0));
                continue;
            }
            let token_id = st.processor.sample(&logits_f32.i(row)?)?;
            next.push(token_id);
            if model.stop_ids.contains(&token_id) {
                st.stop = Some(StopReason::EndOfTurn);
                continue;
            }
            st.ids.push(token_id);
            let text = model.decode(&st.ids)?;
            let delta = if text.len() > st.emitted_len
                && !text.ends_with('\u{fffd}')
                && text.is_char_boundary(st.emitted_len)
            {
                let d = &text[st.emitted_len..];
                st.emitted_len = text.len();
                d
            } else {
                ""
            };
            on_token(TokenEvent {
                stream_idx: row,
                token_id,
                text: delta,
            });
        }
        if states.iter().all(|s| s.stop.is_some()) {
            break;
        }
        if cancel.load(Ordering::Relaxed) {
            for st in &mut states {
                st.stop.get_or_insert(StopReason::Cancelled);
            }
            break;
        }
        if step + 1 == req.max_new_tokens {
            break;
        }
        let input = Tensor::from_vec(next, (batch, 1), device)?;
        let out = tf.forward(&input, &mut cache, &args)?;
        logits = out.logits;
        decode_steps += 1;
        if let (Some(t), Some(new)) = (trace.as_mut(), out.trace.as_ref()) {
            t.append_tokens(new);
        }
    }
    let decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    let streams = states
        .into_iter()
        .zip(&req.streams)
        .map(|(st, spec)| {
            Ok(StreamOutput {
                label: spec.label.clone(),
                text: model.decode(&st.ids)?,
                token_ids: st.ids,
                stop: st.stop.unwrap_or(StopReason::MaxTokens),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(GenerateOutput {
        streams,
        prompt_len,
        trace,
        prefill_ms,
        decode_ms,
        decode_steps,
    })
}
