//! Refusal-rate sweeps over strengths x layers (and directional ablation), with the cost of each
//! setting in KL divergence on harmless prompts, and the suggested setting; and best-of-N
//! sampling (how many samples until a model refuses).

use std::fmt::Write as _;
use std::sync::atomic::AtomicBool;

use super::eval::{judged_streams, kl_from_unsteered, refusal_rates, EvalOptions, RefusalRate};
use crate::error::{Error, Result};
use crate::generate::{Sampling, StreamSpec};
use crate::hooks::{Scope, Steering};
use crate::model::Model;
use crate::vector::SteeringVector;

/// One cell of the grid.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepCell {
    /// `None` for the ablation row.
    pub layer_idx: Option<usize>,
    pub strength: f64,
    pub refusal_rate: f64,
    /// Mean KL(unsteered || steered) of the next-token distribution on the KL prompts.
    pub kl: f64,
}

/// The suggested setting: the smallest strength reaching the target rate, at the layer where
/// that costs the least KL.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suggestion {
    pub layer_idx: usize,
    pub strength: f64,
    pub refusal_rate: f64,
    pub kl: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepResult {
    pub layers: Vec<usize>,
    pub strengths: Vec<f64>,
    pub scope: Scope,
    pub baseline_rate: f64,
    pub cells: Vec<SweepCell>,
    pub ablation: Option<SweepCell>,
    pub target_rate: f64,
    pub suggestion: Option<Suggestion>,
}

impl SweepResult {
    /// The grid as CSV: `layer,strength,refusal_rate,kl` (layer `ablate` for the ablation row).
    #[must_use]
    pub fn to_csv(&self) -> String {
        let mut s = String::from("layer,strength,refusal_rate,kl\n");
        for c in self.cells.iter().chain(self.ablation.iter()) {
            let layer = c
                .layer_idx
                .map_or_else(|| "ablate".to_owned(), |l| l.to_string());
            let _ = writeln!(
                s,
                "{layer},{},{:.6},{:.6}",
                c.strength, c.refusal_rate, c.kl
            );
        }
        s
    }
}

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub layers: Vec<usize>,
    pub strengths: Vec<f64>,
    pub scope: Scope,
    /// Also measure directional ablation of the direction at `ablate_layer`.
    pub ablate_layer: Option<usize>,
    pub target_rate: f64,
    pub eval: EvalOptions,
}

/// Refusal rate on `prompts` for every (layer, strength), the ablation row, and the KL cost
/// of each on `kl_prompts`. `progress(done, total)` counts prompts.
pub fn sweep(
    model: &Model,
    vector: &SteeringVector,
    prompts: &[String],
    kl_prompts: &[String],
    opts: &SweepOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SweepResult> {
    if opts.layers.is_empty() || opts.strengths.is_empty() {
        return Err(Error::invalid(
            "sweep",
            "needs at least one layer and one strength",
        ));
    }
    let mut conditions = vec![Steering::default()];
    let mut keys = Vec::new();
    for &l in &opts.layers {
        model.cfg().check_layer(l)?;
        let d = vector.for_layer(l)?;
        for &s in &opts.strengths {
            conditions.push(Steering::add(l, d.clone(), s, opts.scope));
            keys.push((Some(l), s));
        }
    }
    if let Some(l) = opts.ablate_layer {
        conditions.push(Steering::ablate(vector.for_layer(l)?));
        keys.push((None, 0.0));
    }
    let total = prompts.len() + kl_prompts.len();
    let rates: Vec<RefusalRate> = refusal_rates(
        model,
        prompts,
        &conditions,
        &opts.eval,
        cancel,
        &mut |d, _| {
            progress(d, total);
        },
    )?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    let kls = if kl_prompts.is_empty() {
        vec![0.0; conditions.len() - 1]
    } else {
        kl_from_unsteered(
            model,
            kl_prompts,
            &conditions[1..],
            opts.eval.chat,
            &mut |d, _| {
                progress(prompts.len() + d, total);
            },
        )?
    };
    let mut cells: Vec<SweepCell> = keys
        .iter()
        .enumerate()
        .map(|(i, &(layer_idx, strength))| SweepCell {
            layer_idx,
            strength,
            refusal_rate: rates[i + 1].rate(),
            kl: kls[i],
        })
        .collect();
    let ablation = if opts.ablate_layer.is_some() {
        cells.pop()
    } else {
        None
    };
    // Per layer, the smallest strength reaching the target; then the cheapest in KL.
    let mut best: Option<Suggestion> = None;
    for &l in &opts.layers {
        let first = cells
            .iter()
            .filter(|c| c.layer_idx == Some(l) && c.refusal_rate >= opts.target_rate)
            .min_by(|a, b| a.strength.abs().total_cmp(&b.strength.abs()));
        if let Some(c) = first {
            if best.as_ref().is_none_or(|b| c.kl < b.kl) {
                best = Some(Suggestion {
                    layer_idx: l,
                    strength: c.strength,
                    refusal_rate: c.refusal_rate,
                    kl: c.kl,
                });
            }
        }
    }
    Ok(SweepResult {
        layers: opts.layers.clone(),
        strengths: opts.strengths.clone(),
        scope: opts.scope,
        baseline_rate: rates[0].rate(),
        cells,
        ablation,
        target_rate: opts.target_rate,
        suggestion: best,
    })
}

/// Best-of-N for one prompt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BestOfN {
    pub prompt: String,
    pub refused: Vec<bool>,
    /// Fraction of the N samples that refuse.
    pub refusal_fraction: f64,
    /// 1-based index of the first refusing sample, `None` when none refuses.
    pub samples_to_first_refusal: Option<usize>,
}

/// For each prompt, `n` samples (stream `i` seeded `seed + i`, all in one batch) under
/// `steering`, judged.
pub fn best_of_n(
    model: &Model,
    prompts: &[String],
    steering: &Steering,
    n: usize,
    sampling: Sampling,
    seed: u64,
    opts: &EvalOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<BestOfN>> {
    if n == 0 {
        return Err(Error::invalid("n", "0 (expected at least one sample)"));
    }
    let mut out = Vec::with_capacity(prompts.len());
    for (i, p) in prompts.iter().enumerate() {
        let streams = (0..n)
            .map(|k| StreamSpec {
                label: format!("sample {k}"),
                steering: steering.clone(),
                seed: seed + k as u64,
            })
            .collect();
        let refused: Vec<bool> = judged_streams(model, p, streams, sampling, opts, cancel)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        let count = refused.iter().filter(|&&r| r).count();
        out.push(BestOfN {
            prompt: p.clone(),
            refusal_fraction: count as f64 / n as f64,
            samples_to_first_refusal: refused.iter().position(|&r| r).map(|k| k + 1),
            refused,
        });
        progress(i + 1, prompts.len());
    }
    Ok(out)
}
