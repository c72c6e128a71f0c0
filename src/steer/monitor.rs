//! Checkpoint monitoring: how far a fixed direction is expressed in a model's activations, and
//! how that tracks the refusal rate across checkpoints.

use candle_core::{IndexOp, Tensor};

use crate::error::Result;
use crate::extract::mean_last_token_activations;
use crate::model::Model;

/// Mean over `prompts` of the projection of `blocks.{layer_idx}.hook_resid_post` at the last
/// prompt token onto the unit vector along `direction` (chat template applied).
///
/// # Shapes
/// `direction`: `[hidden_size]`.
pub fn mean_projection(
    model: &Model,
    prompts: &[String],
    direction: &Tensor,
    layer_idx: usize,
) -> Result<f64> {
    model.cfg().check_layer(layer_idx)?;
    model.transformer.check_width("direction", direction)?;
    let means = mean_last_token_activations(model, prompts, true, &mut |_, _| {})?;
    let u = crate::model::forward::unit(direction)?;
    let dot = (means.i(layer_idx)? * u)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(dot))
}

/// Pearson correlation of two equally long series; `None` when either is constant or they
/// have fewer than two points.
#[must_use]
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some(sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::pearson;

    #[test]
    fn pearson_matches_hand_computed_values() {
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // x = 1..4, y = 1, 3, 2, 4: r = 0.8.
        assert!(
            (pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap() - 0.8).abs() < 1e-12
        );
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
    }
}

/// One checkpoint's measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRow {
    pub checkpoint: String,
    /// Mean projection of the harmless prompts onto the fixed direction.
    pub projection: f64,
    /// Greedy refusal rate (judge) on the harmless prompts.
    pub refusal_rate: f64,
    /// Mean first-token refusal score on the harmless prompts.
    pub refusal_score: f64,
    /// Mean projection of the harmful prompts, when given.
    pub harmful_projection: Option<f64>,
    /// Refusal rate on the harmful prompts, when given.
    pub harmful_refusal_rate: Option<f64>,
}

/// The early warning: the projection rose past its threshold before the refusal rate did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Alert {
    /// First checkpoint whose projection exceeds the threshold.
    pub projection_checkpoint: usize,
    pub projection_threshold: f64,
    /// First checkpoint whose refusal rate exceeds the first one's by `rate_rise`, if any.
    pub refusal_checkpoint: Option<usize>,
    /// How many checkpoints earlier the projection warned (`None`: the rate never rose).
    pub lead: Option<usize>,
}

/// The monitor's report over a series of checkpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MonitorReport {
    pub layer_idx: usize,
    pub rows: Vec<CheckpointRow>,
    /// Pearson r between projection and refusal rate across checkpoints.
    pub pearson_r: Option<f64>,
    pub alert: Option<Alert>,
}

/// How the alert is raised.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AlertRule {
    /// The projection threshold: the first checkpoint's harmless projection plus this fraction
    /// of the gap to its harmful projection (needs harmful prompts), or, without harmful
    /// prompts, plus this value in absolute units.
    pub projection_rise: f64,
    /// The refusal rate counts as risen when it exceeds the first checkpoint's by this much.
    pub rate_rise: f64,
}

impl Default for AlertRule {
    fn default() -> Self {
        Self {
            projection_rise: 0.25,
            rate_rise: 0.1,
        }
    }
}

/// Measure every checkpoint (already loaded by `load`) on `harmless` (and `harmful`) prompts.
pub fn monitor(
    checkpoints: &[String],
    load: &mut dyn FnMut(&str) -> Result<Model>,
    direction: &Tensor,
    layer_idx: usize,
    harmless: &[String],
    harmful: Option<&[String]>,
    opts: &super::eval::EvalOptions,
    rule: AlertRule,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<MonitorReport> {
    use super::eval::{refusal_rate, refusal_scores, refusal_token_ids};
    use crate::hooks::Steering;
    let mut rows = Vec::with_capacity(checkpoints.len());
    for (i, ckpt) in checkpoints.iter().enumerate() {
        let model = load(ckpt)?;
        let projection = mean_projection(&model, harmless, direction, layer_idx)?;
        let rate = refusal_rate(&model, harmless, opts)?.rate();
        let ids = refusal_token_ids(&model, &opts.judge)?;
        let score = refusal_scores(
            &model,
            harmless,
            &[Steering::default()],
            &ids,
            opts.chat,
            &mut |_, _| {},
        )?[0];
        let (harmful_projection, harmful_refusal_rate) = match harmful {
            Some(h) => (
                Some(mean_projection(&model, h, direction, layer_idx)?),
                Some(refusal_rate(&model, h, opts)?.rate()),
            ),
            None => (None, None),
        };
        rows.push(CheckpointRow {
            checkpoint: ckpt.clone(),
            projection,
            refusal_rate: rate,
            refusal_score: score,
            harmful_projection,
            harmful_refusal_rate,
        });
        progress(i + 1, checkpoints.len());
    }
    let xs: Vec<f64> = rows.iter().map(|r| r.projection).collect();
    let ys: Vec<f64> = rows.iter().map(|r| r.refusal_rate).collect();
    let alert = rows.first().and_then(|first| {
        let threshold = match first.harmful_projection {
            Some(hp) => first.projection + rule.projection_rise * (hp - first.projection),
            None => first.projection + rule.projection_rise,
        };
        let p = rows.iter().position(|r| r.projection > threshold)?;
        let q = rows
            .iter()
            .position(|r| r.refusal_rate > first.refusal_rate + rule.rate_rise);
        match q {
            Some(q) if q <= p => None,
            _ => Some(Alert {
                projection_checkpoint: p,
                projection_threshold: threshold,
                refusal_checkpoint: q,
                lead: q.map(|q| q - p),
            }),
        }
    });
    Ok(MonitorReport {
        layer_idx,
        pearson_r: pearson(&xs, &ys),
        rows,
        alert,
    })
}

/// For every layer `l` of `vector`: Pearson r across checkpoints between the mean projection
/// of `prompts` at layer `l` onto `direction.l` and the refusal rate on `prompts`. Picks the
/// layer whose projection tracks refusal best (run it on training prompts, then monitor
/// held-out ones). Returns `(layer, r)` pairs, `r` NaN when undefined.
pub fn scan_layers(
    checkpoints: &[String],
    load: &mut dyn FnMut(&str) -> Result<Model>,
    vector: &crate::vector::SteeringVector,
    prompts: &[String],
    opts: &super::eval::EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<(usize, f64)>> {
    let layers = vector.layers();
    let mut units = Vec::with_capacity(layers.len());
    for &l in &layers {
        units.push(crate::model::forward::unit(&vector.for_layer(l)?)?);
    }
    let mut proj: Vec<Vec<f64>> = vec![Vec::new(); layers.len()];
    let mut rates = Vec::with_capacity(checkpoints.len());
    for (i, ckpt) in checkpoints.iter().enumerate() {
        let model = load(ckpt)?;
        let means = mean_last_token_activations(&model, prompts, opts.chat, &mut |_, _| {})?;
        for (k, (&l, u)) in layers.iter().zip(&units).enumerate() {
            model.cfg().check_layer(l)?;
            let u = u.to_device(model.transformer.device())?;
            let dot = (means.i(l)? * u)?.sum_all()?.to_scalar::<f32>()?;
            proj[k].push(f64::from(dot));
        }
        rates.push(super::eval::refusal_rate(&model, prompts, opts)?.rate());
        progress(i + 1, checkpoints.len());
    }
    Ok(layers
        .iter()
        .zip(&proj)
        .map(|(&l, p)| (l, pearson(p, &rates).unwrap_or(f64::NAN)))
        .collect())
}
