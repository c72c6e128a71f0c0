//! Direction selection: which layer's candidate direction steers refusal best. For every layer,
//! add its direction to harmless prompts at a few strengths and ablate it on harmful prompts;
//! keep layers in the first 80% of the model whose ablation changes harmless prompts' next-token
//! distribution by KL < 0.1 (both filters as Arditi et al.) and whose addition reaches the
//! target refusal rate, and prefer the direction whose ablation removes the most refusal (rate,
//! then the first-token refusal score).
//! Small models can break down when a direction is added at every generated position; adding
//! over the prompt only (`Scope::Prompt`) steers them without wrecking the text.

use std::sync::atomic::AtomicBool;

use super::eval::{refusal_rates, EvalOptions};
use crate::error::{Error, Result};
use crate::hooks::{Scope, Steering};
use crate::model::Model;
use crate::vector::SteeringVector;

/// One layer's scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerScore {
    pub layer_idx: usize,
    /// Harmless refusal rate under addition, one per strength.
    pub added_refusal: Vec<f64>,
    /// Harmful refusal rate with the direction ablated.
    pub ablated_refusal: f64,
    /// Mean refusal score (first-token log-odds) on harmful prompts with the direction ablated.
    pub ablated_score: f64,
    /// Smallest strength whose added refusal reaches the target, if any.
    pub min_strength: Option<f64>,
    /// Mean KL(unsteered || ablated) of the next-token distribution on harmless prompts.
    pub ablated_kl: f64,
    /// Inside the first 80% of layers, and `ablated_kl` below the KL limit.
    pub eligible: bool,
}

/// The whole grid and the chosen layer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Selection {
    pub strengths: Vec<f64>,
    /// Positions the addition covered.
    pub scope: Scope,
    pub target_rate: f64,
    pub max_kl: f64,
    pub baseline_harmless_refusal: f64,
    pub baseline_harmful_refusal: f64,
    pub layers: Vec<LayerScore>,
    pub best_layer: Option<usize>,
}

/// Score every layer of `vector` (which must hold a direction per layer).
pub fn select_layer(
    model: &Model,
    vector: &SteeringVector,
    harmful: &[String],
    harmless: &[String],
    strengths: &[f64],
    scope: Scope,
    target_rate: f64,
    max_kl: f64,
    opts: &EvalOptions,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Selection> {
    let n_layers = model.cfg().n_layers;
    if strengths.is_empty() {
        return Err(Error::invalid(
            "strengths",
            "none given (expected at least one)",
        ));
    }
    let layers = vector.layers();
    let mut add_conditions = vec![Steering::default()];
    let mut ablate_conditions = vec![Steering::default()];
    for &l in &layers {
        let d = vector.for_layer(l)?;
        for &s in strengths {
            add_conditions.push(Steering::add(l, d.clone(), s, scope));
        }
        ablate_conditions.push(Steering::ablate(d));
    }
    let total = harmful.len() + harmless.len();
    let added = refusal_rates(
        model,
        harmless,
        &add_conditions,
        opts,
        cancel,
        &mut |d, _| {
            progress(d, total);
        },
    )?;
    let ablated = refusal_rates(
        model,
        harmful,
        &ablate_conditions,
        opts,
        cancel,
        &mut |d, _| {
            progress(harmless.len() + d, total);
        },
    )?;
    let refusal_ids = super::eval::refusal_token_ids(model, &opts.judge)?;
    let scores_ablated = super::eval::refusal_scores(
        model,
        harmful,
        &ablate_conditions,
        &refusal_ids,
        opts.chat,
        &mut |_, _| {},
    )?;
    let kls = super::eval::kl_from_unsteered(
        model,
        harmless,
        &ablate_conditions[1..],
        opts.chat,
        &mut |_, _| {},
    )?;
    let cutoff = (n_layers as f64 * 0.8).ceil() as usize;
    let scores: Vec<LayerScore> = layers
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let added_refusal: Vec<f64> = added
                [(1 + i * strengths.len())..=((i + 1) * strengths.len())]
                .iter()
                .map(super::eval::RefusalRate::rate)
                .collect();
            let min_strength = strengths
                .iter()
                .zip(&added_refusal)
                .filter(|(_, &r)| r >= target_rate)
                .map(|(&s, _)| s)
                .reduce(f64::min);
            LayerScore {
                layer_idx: l,
                added_refusal,
                ablated_refusal: ablated[1 + i].rate(),
                ablated_score: scores_ablated[1 + i],
                ablated_kl: kls[i],
                min_strength,
                eligible: l < cutoff && kls[i] < max_kl,
            }
        })
        .collect();
    let best_layer = scores
        .iter()
        .filter(|s| s.eligible && s.min_strength.is_some())
        .min_by(|a, b| {
            a.ablated_refusal
                .total_cmp(&b.ablated_refusal)
                .then(a.ablated_score.total_cmp(&b.ablated_score))
        })
        .map(|s| s.layer_idx);
    Ok(Selection {
        strengths: strengths.to_vec(),
        scope,
        target_rate,
        max_kl,
        baseline_harmless_refusal: added[0].rate(),
        baseline_harmful_refusal: ablated[0].rate(),
        layers: scores,
        best_layer,
    })
}
