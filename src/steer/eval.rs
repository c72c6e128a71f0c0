//! Refusal-rate evaluation: greedy completions of a prompt set, judged by substring, under one or
//! several steering conditions at once (the conditions of one prompt run as one batch).

use std::sync::atomic::AtomicBool;

use super::judge::Judge;
use crate::error::Result;
use crate::generate::{generate, GenerateRequest, Sampling, StreamSpec};
use crate::hooks::Steering;
use crate::model::Model;

/// One judged completion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Judged {
    pub prompt: String,
    pub completion: String,
    pub refused: bool,
}

/// The refusal rate of one steering condition over a prompt set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusalRate {
    pub refused: usize,
    pub total: usize,
    pub judged: Vec<Judged>,
}

impl RefusalRate {
    /// Fraction refused, in `[0, 1]` (0 for an empty set).
    #[must_use]
    pub fn rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.refused as f64 / self.total as f64
        }
    }
}

/// Options of a refusal evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Tokens generated per completion; refusals show in the first few.
    pub max_new_tokens: usize,
    pub judge: Judge,
    /// Apply the model's chat template to each prompt.
    pub chat: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 16,
            judge: Judge::default(),
            chat: true,
        }
    }
}

/// Greedy completions of every prompt under every condition in `conditions` (an empty
/// `Steering` is the unsteered model), judged. Returns one [`RefusalRate`] per condition.
/// `progress(done, total)` is called after each prompt; `cancel` stops between tokens and
/// between prompts ([`crate::Error::Cancelled`]).
pub fn refusal_rates(
    model: &Model,
    prompts: &[String],
    conditions: &[Steering],
    opts: &EvalOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<RefusalRate>> {
    let mut out: Vec<RefusalRate> = conditions
        .iter()
        .map(|_| RefusalRate {
            refused: 0,
            total: 0,
            judged: Vec::with_capacity(prompts.len()),
        })
        .collect();
    for (i, prompt) in prompts.iter().enumerate() {
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::Error::Cancelled);
        }
        let streams = conditions
            .iter()
            .map(|s| StreamSpec {
                label: String::new(),
                steering: s.clone(),
                seed: 0,
            })
            .collect();
        let texts = judged_streams(model, prompt, streams, Sampling::default(), opts, cancel)?;
        for (rate, (completion, refused)) in out.iter_mut().zip(texts) {
            rate.total += 1;
            rate.refused += usize::from(refused);
            rate.judged.push(Judged {
                prompt: prompt.clone(),
                completion,
                refused,
            });
        }
        progress(i + 1, prompts.len());
    }
    Ok(out)
}

/// One prompt's completions, one per stream (run as one batch), each with the judge's verdict.
pub(crate) fn judged_streams(
    model: &Model,
    prompt: &str,
    streams: Vec<StreamSpec>,
    sampling: Sampling,
    opts: &EvalOptions,
    cancel: &AtomicBool,
) -> Result<Vec<(String, bool)>> {
    let req = GenerateRequest {
        prompt_ids: model.encode_prompt(prompt, opts.chat)?,
        streams,
        max_new_tokens: opts.max_new_tokens,
        sampling,
        trace: None,
    };
    let gen = generate(model, &req, cancel, &mut |_| {})?;
    Ok(gen
        .streams
        .into_iter()
        .map(|s| {
            let refused = opts.judge.is_refusal(&s.text);
            (s.text, refused)
        })
        .collect())
}

/// The refusal rate of the unsteered model.
pub fn refusal_rate(model: &Model, prompts: &[String], opts: &EvalOptions) -> Result<RefusalRate> {
    let never = AtomicBool::new(false);
    let mut rates = refusal_rates(
        model,
        prompts,
        &[Steering::default()],
        opts,
        &never,
        &mut |_, _| {},
    )?;
    Ok(rates.remove(0))
}

/// First tokens of the judge's refusal phrases in this model's vocabulary (for
/// [`refusal_scores`]): for each substring, the first token of its encoding, with and without a
/// leading space.
pub fn refusal_token_ids(model: &Model, judge: &Judge) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for s in &judge.substrings {
        for text in [s.clone(), format!(" {s}")] {
            let enc = model
                .tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| crate::Error::Tokenizer(e.to_string()))?;
            if let Some(&id) = enc.get_ids().first() {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
}

/// The refusal score of Arditi et al. (2024), with no generation: from the next-token
/// distribution after the prompt, `log p(R) - log(1 - p(R))` where `p(R)` is the probability
/// of starting with a refusal token. Returns the mean score per condition over `prompts`.
pub fn refusal_scores(
    model: &Model,
    prompts: &[String],
    conditions: &[Steering],
    refusal_ids: &[u32],
    chat: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let n = conditions.len();
    if n == 0 || prompts.is_empty() || refusal_ids.is_empty() {
        return Err(crate::Error::invalid(
            "refusal score",
            "needs at least one condition, one prompt and one refusal token",
        ));
    }
    let ids_t = candle_core::Tensor::new(refusal_ids, model.transformer.device())?;
    let mut sums = vec![0f64; n];
    for (i, prompt) in prompts.iter().enumerate() {
        let probs = next_token_logprobs(model, prompt, conditions, chat)?.exp()?;
        let p_refuse = probs.index_select(&ids_t, 1)?.sum(1)?.to_vec1::<f32>()?;
        for (row, p) in p_refuse.iter().enumerate() {
            let p = f64::from(*p).clamp(1e-12, 1.0 - 1e-12);
            sums[row] += p.ln() - (1.0 - p).ln();
        }
        progress(i + 1, prompts.len());
    }
    Ok(sums.into_iter().map(|s| s / prompts.len() as f64).collect())
}

/// Next-token log-probabilities after each prompt under each condition (conditions of one
/// prompt run as one batch).
///
/// # Shapes
/// Returns one `[n_conditions, vocab]` f32 tensor per prompt.
fn next_token_logprobs(
    model: &Model,
    prompt: &str,
    conditions: &[Steering],
    chat: bool,
) -> Result<candle_core::Tensor> {
    use candle_core::{DType, Tensor};
    let tf = &model.transformer;
    let ids = model.encode_prompt(prompt, chat)?;
    let input = Tensor::new(ids.as_slice(), tf.device())?
        .unsqueeze(0)?
        .repeat((conditions.len(), 1))?;
    let steering: Vec<Steering> = if conditions.iter().all(Steering::is_empty) {
        vec![]
    } else {
        conditions.to_vec()
    };
    let out = tf.forward(
        &input,
        &mut crate::model::KvCache::new(tf.cfg.n_layers),
        &crate::model::ForwardArgs {
            steering: &steering,
            prompt_len: ids.len(),
            ..crate::model::ForwardArgs::default()
        },
    )?;
    Ok(candle_nn::ops::log_softmax(
        &out.logits.to_dtype(DType::F32)?,
        candle_core::D::Minus1,
    )?)
}

/// Mean KL divergence `KL(p_base || p_condition)` of the next-token distribution after each
/// prompt, per condition, where the base is the unsteered model: how much a steering changes
/// what the model would say (Arditi et al. filter directions with KL < 0.1 on harmless prompts).
pub fn kl_from_unsteered(
    model: &Model,
    prompts: &[String],
    conditions: &[Steering],
    chat: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f64>> {
    let mut all = vec![Steering::default()];
    all.extend_from_slice(conditions);
    let mut sums = vec![0f64; conditions.len()];
    for (i, p) in prompts.iter().enumerate() {
        let lp = next_token_logprobs(model, p, &all, chat)?;
        let base = lp.narrow(0, 0, 1)?;
        let rest = lp.narrow(0, 1, conditions.len())?;
        // sum_v p(v) (log p(v) - log q(v)), per condition.
        let kl = base
            .exp()?
            .broadcast_mul(&base.broadcast_sub(&rest)?)?
            .sum(1)?
            .to_vec1::<f32>()?;
        for (s, k) in sums.iter_mut().zip(kl) {
            *s += f64::from(k.max(0.0));
        }
        progress(i + 1, prompts.len());
    }
    let n = prompts.len().max(1) as f64;
    Ok(sums.into_iter().map(|s| s / n).collect())
}
