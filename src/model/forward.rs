//! The one instrumented forward pass. With no steering and no trace it does exactly the work
//! of candle-transformers' `llama` / `quantized_llama` forwards; hooks add only what they need.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};

use super::config::ModelConfig;
use super::weights::{BlockWeights, Weights};
use crate::error::{Error, Result};
use crate::hooks::{BlockHook, Component, HookPoint, Scope, Steering, TraceSpec};
use crate::trace::TraceRecord;

/// Weights plus the precomputed RoPE tables: everything the forward needs, shared read-only.
#[derive(Debug, Clone)]
pub struct Transformer {
    pub cfg: ModelConfig,
    pub(crate) weights: Weights,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Per-layer key/value cache for one batch of sequences.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub seq_len: usize,
}

impl KvCache {
    #[must_use]
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            seq_len: 0,
        }
    }
}

/// What a forward call should do besides computing logits.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardArgs<'a> {
    /// Empty: no steering. One entry: applied to every batch row. Otherwise one per batch row.
    pub steering: &'a [Steering],
    pub trace: Option<&'a TraceSpec>,
    /// Positions `< prompt_len` are prompt positions (for [`Scope`]).
    pub prompt_len: usize,
    /// Return logits for every position, not only the last.
    pub all_logits: bool,
    /// Use only ops with gradients (slow RMS norm, RoPE and softmax) so the output can be
    /// backpropagated; training uses this, inference does not.
    pub differentiable: bool,
}

/// What a forward call returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `[batch, vocab]` for the last position, or `[batch, seq, vocab]` with `all_logits`.
    pub logits: Tensor,
    /// Summaries, when the trace asked for them.
    pub trace: Option<TraceRecord>,
    /// Full activations of the hook points the trace asked to capture, each `[batch, seq, hidden]`.
    pub captures: HashMap<HookPoint, Tensor>,
}

/// Steering turned into tensors for one call (batch size and positions known).
struct Prepared {
    /// Per layer: the delta added to `hook_resid_post`, broadcastable to `[batch, seq, hidden]`.
    add: Vec<Option<Tensor>>,
    /// Directions to project out: (unit column `[hidden, 1]`, unit row `[1, 1, hidden]`,
    /// row mask `[batch, 1, 1]` or `None` for all rows).
    ablate: Vec<(Tensor, Tensor, Option<Tensor>)>,
    /// Per layer and component: (keep mask `[batch, 1, 1]`, replacement `[batch, 1, hidden]`).
    attn: Vec<Option<(Tensor, Tensor)>>,
    mlp: Vec<Option<(Tensor, Tensor)>>,
}

/// Device-side summaries collected during one call, moved to the host once at the end.
struct Collector {
    /// Unit directions as columns, `[hidden, n_dirs]`.
    dirs: Option<Tensor>,
    /// Set once the embedding is summarized (always, before any block).
    embed: Option<(Tensor, Option<Tensor>)>,
    per_hook: [Vec<(Tensor, Option<Tensor>)>; 5],
}

impl Collector {
    /// # Shapes
    /// `x`: `[batch, seq, hidden]` -> norms `[batch, seq]`, projections `[batch, seq, n_dirs]`.
    fn summarize(&self, x: &Tensor) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let norms = x.sqr()?.sum(D::Minus1)?.sqrt()?;
        let proj = match &self.dirs {
            Some(d) => Some(x.broadcast_matmul(d)?),
            None => None,
        };
        Ok((norms, proj))
    }
}

fn row_mask(batch: usize, row: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mut m = vec![0f32; batch];
    m[row] = 1.0;
    Tensor::from_vec(m, (batch, 1, 1), device)
}

/// `v` flattened to f32 and scaled to unit length; an error names a zero or non-finite norm.
pub(crate) fn unit(v: &Tensor) -> Result<Tensor> {
    let v = v.to_dtype(DType::F32)?.flatten_all()?;
    let norm = v.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    if !norm.is_finite() || norm == 0.0 {
        return Err(Error::invalid(
            "direction",
            format!("norm is {norm}; expected a finite, non-zero vector"),
        ));
    }
    Ok((v / f64::from(norm))?)
}

impl Transformer {
    pub(crate) fn new(cfg: ModelConfig, weights: Weights, device: &Device) -> Result<Self> {
        let inv_freq = cfg.rope_inv_freq();
        let n_freq = inv_freq.len();
        let theta = Tensor::new(inv_freq, device)?;
        let positions = cfg.context_len;
        let idx_theta = Tensor::arange(0, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?
            .matmul(&theta.reshape((1, n_freq))?)?;
        Ok(Self {
            cos: idx_theta.cos()?,
            sin: idx_theta.sin()?,
            cfg,
            weights,
            device: device.clone(),
        })
    }

    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Check a vector is a `[hidden_size]` direction.
    pub fn check_width(&self, what: &str, v: &Tensor) -> Result<()> {
        let found = v.elem_count();
        if v.rank() > 1 && v.dims().iter().filter(|&&d| d > 1).count() > 1
            || found != self.cfg.hidden_size
        {
            return Err(Error::WidthMismatch {
                what: what.into(),
                found,
                expected: self.cfg.hidden_size,
            });
        }
        Ok(())
    }

    fn check_steering(&self, steering: &Steering) -> Result<()> {
        for a in &steering.additions {
            self.cfg.check_layer(a.layer_idx)?;
            self.check_width("steering vector", &a.vector)?;
            if !a.strength.is_finite() {
                return Err(Error::invalid(
                    "strength",
                    format!("{} (expected a finite number)", a.strength),
                ));
            }
        }
        if let Some(d) = &steering.ablate_direction {
            self.check_width("ablation direction", d)?;
        }
        for c in &steering.component_ablations {
            self.cfg.check_layer(c.layer_idx)?;
            if let Some(m) = &c.mean {
                self.check_width("mean-ablation vector", m)?;
            }
        }
        Ok(())
    }

    fn prepare(
        &self,
        steering: &[Steering],
        batch: usize,
        index_pos: usize,
        seq_len: usize,
        prompt_len: usize,
    ) -> Result<Option<Prepared>> {
        if steering.iter().all(Steering::is_empty) {
            return Ok(None);
        }
        if steering.len() != 1 && steering.len() != batch {
            return Err(Error::invalid(
                "steering",
                format!(
                    "{} entries for a batch of {batch} (expected 1 or {batch})",
                    steering.len()
                ),
            ));
        }
        let dev = &self.device;
        let h = self.cfg.hidden_size;
        let n_layers = self.cfg.n_layers;
        let mut p = Prepared {
            add: vec![None; n_layers],
            ablate: Vec::new(),
            attn: vec![None; n_layers],
            mlp: vec![None; n_layers],
        };
        // Which of this call's positions each scope covers: None = all, Some(mask) = some.
        let pos_mask = |scope: Scope| -> candle_core::Result<Option<Option<Tensor>>> {
            let in_scope = |pos: usize| match scope {
                Scope::All => true,
                Scope::Prompt => pos < prompt_len,
                Scope::Generated => pos >= prompt_len,
            };
            let m: Vec<bool> = (index_pos..index_pos + seq_len).map(in_scope).collect();
            if m.iter().all(|&x| !x) {
                Ok(None)
            } else if m.iter().all(|&x| x) {
                Ok(Some(None))
            } else {
                let m: Vec<f32> = m.into_iter().map(|x| f32::from(u8::from(x))).collect();
                Ok(Some(Some(Tensor::from_vec(m, (1, seq_len, 1), dev)?)))
            }
        };
        for (row, s) in steering.iter().enumerate() {
            self.check_steering(s)?;
            let rmask = if steering.len() == 1 {
                None
            } else {
                Some(row_mask(batch, row, dev)?)
            };
            for a in &s.additions {
                let Some(pmask) = pos_mask(a.scope)? else {
                    continue;
                };
                let mut delta = (a.vector.to_dtype(DType::F32)?.reshape((1, 1, h))? * a.strength)?;
                if let Some(m) = &pmask {
                    delta = delta.broadcast_mul(m)?;
                }
                if let Some(m) = &rmask {
                    delta = delta.broadcast_mul(m)?;
                }
                let slot = &mut p.add[a.layer_idx];
                *slot = Some(match slot.take() {
                    None => delta,
                    Some(prev) => prev.broadcast_add(&delta)?,
                });
            }
            if let Some(d) = &s.ablate_direction {
                let d = unit(d)?;
                p.ablate
                    .push((d.reshape((h, 1))?, d.reshape((1, 1, h))?, rmask.clone()));
            }
            for c in &s.component_ablations {
                let ones = Tensor::ones((batch, 1, 1), DType::F32, dev)?;
                let sel = rmask.clone().unwrap_or_else(|| ones.clone());
                let repl = match &c.mean {
                    None => Tensor::zeros((batch, 1, h), DType::F32, dev)?,
                    Some(m) => m
                        .to_dtype(DType::F32)?
                        .reshape((1, 1, h))?
                        .broadcast_mul(&sel)?,
                };
                let slot = match c.component {
                    Component::Attn => &mut p.attn[c.layer_idx],
                    Component::Mlp => &mut p.mlp[c.layer_idx],
                };
                *slot = Some(match slot.take() {
                    None => ((ones - &sel)?, repl),
                    Some((keep, prev)) => (
                        (keep - &sel)?.relu()?,
                        (prev.broadcast_mul(&(ones - &sel)?)? + repl)?,
                    ),
                });
            }
        }
        Ok(Some(p))
    }

    /// Project the ablation directions out of `x`.
    fn ablate(p: &Prepared, mut x: Tensor) -> candle_core::Result<Tensor> {
        for (col, row, rmask) in &p.ablate {
            let mut along = x.broadcast_matmul(col)?.broadcast_mul(row)?;
            if let Some(m) = rmask {
                along = along.broadcast_mul(m)?;
            }
            x = (x - along)?;
        }
        Ok(x)
    }

    /// Apply a component ablation (zero or mean) to a sublayer output.
    fn replace(slot: Option<&(Tensor, Tensor)>, x: Tensor) -> candle_core::Result<Tensor> {
        match slot {
            None => Ok(x),
            Some((keep, repl)) => x.broadcast_mul(keep)?.broadcast_add(repl),
        }
    }

    /// Run the model on `input_ids` (`[batch, seq]`), appending to `cache`.
    ///
    /// # Shapes
    /// `input_ids`: `[batch, seq]` u32. Logits `[batch, vocab]` (last position) or
    /// `[batch, seq, vocab]` with `all_logits`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        cache: &mut KvCache,
        args: &ForwardArgs<'_>,
    ) -> Result<ForwardOutput> {
        let (batch, seq_len) = input_ids.dims2()?;
        if batch == 0 || seq_len == 0 {
            return Err(Error::invalid(
                "input",
                format!("{batch}x{seq_len} tokens (expected at least one token per row)"),
            ));
        }
        let index_pos = cache.seq_len;
        if index_pos + seq_len > self.cfg.context_len {
            return Err(Error::PromptTooLong {
                n_tokens: index_pos + seq_len,
                max_new_tokens: 0,
                context_len: self.cfg.context_len,
            });
        }
        if cache.layers.len() != self.cfg.n_layers {
            *cache = KvCache::new(self.cfg.n_layers);
        }
        let norm = |n: &candle_nn::RmsNorm, x: &Tensor| {
            if args.differentiable {
                n.forward_diff(x)
            } else {
                n.forward(x)
            }
        };
        let prepared = self.prepare(args.steering, batch, index_pos, seq_len, args.prompt_len)?;
        let prepared = prepared.as_ref();
        let mut collector = match args.trace {
            Some(spec) if spec.summaries => {
                let dirs = if spec.directions.is_empty() {
                    None
                } else {
                    let mut cols = Vec::with_capacity(spec.directions.len());
                    for d in &spec.directions {
                        self.check_width("trace direction", d)?;
                        cols.push(unit(d)?);
                    }
                    Some(Tensor::stack(&cols, 1)?)
                };
                Some(Collector {
                    dirs,
                    embed: None,
                    per_hook: Default::default(),
                })
            }
            _ => None,
        };
        let capture: &[HookPoint] = args.trace.map_or(&[], |t| t.capture.as_slice());
        let mut captures = HashMap::new();
        let mut record = |point: HookPoint, x: &Tensor| {
            if capture.contains(&point) {
                captures.insert(point, x.clone());
            }
        };

        let mask = if seq_len == 1 {
            None
        } else {
            Some(candle_transformers::utils::build_causal_mask(
                seq_len,
                index_pos,
                &self.device,
            )?)
        };

        let mut x = self
            .weights
            .embed
            .index_select(&input_ids.flatten_all()?, 0)?
            .reshape((batch, seq_len, self.cfg.hidden_size))?;
        if let Some(p) = prepared {
            x = Self::ablate(p, x)?;
        }
        record(HookPoint::Embed, &x);
        if let Some(c) = collector.as_mut() {
            c.embed = Some(c.summarize(&x)?);
        }

        for (layer_idx, bw) in self.weights.blocks.iter().enumerate() {
            let mut hook = |hook: BlockHook, x: &Tensor| -> candle_core::Result<()> {
                record(HookPoint::Block { layer_idx, hook }, x);
                if let Some(c) = collector.as_mut() {
                    let s = c.summarize(x)?;
                    c.per_hook[hook.index()].push(s);
                }
                Ok(())
            };
            hook(BlockHook::ResidPre, &x)?;
            let normed = norm(&bw.attn_norm, &x)?;
            let mut attn = self.attention(
                bw,
                &normed,
                layer_idx,
                cache,
                index_pos,
                mask.as_ref(),
                args.differentiable,
            )?;
            if let Some(p) = prepared {
                attn = Self::replace(p.attn[layer_idx].as_ref(), attn)?;
                attn = Self::ablate(p, attn)?;
            }
            hook(BlockHook::AttnOut, &attn)?;
            x = (attn + &x)?;
            hook(BlockHook::ResidMid, &x)?;
            let normed = norm(&bw.mlp_norm, &x)?;
            let gate = bw.gate.forward(&normed)?;
            let up = bw.up.forward(&normed)?;
            let mut mlp = bw.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)?;
            if let Some(p) = prepared {
                mlp = Self::replace(p.mlp[layer_idx].as_ref(), mlp)?;
                mlp = Self::ablate(p, mlp)?;
            }
            hook(BlockHook::MlpOut, &mlp)?;
            x = (mlp + &x)?;
            if let Some(delta) = prepared.and_then(|p| p.add[layer_idx].as_ref()) {
                x = x.broadcast_add(delta)?;
            }
            hook(BlockHook::ResidPost, &x)?;
        }
        cache.seq_len = index_pos + seq_len;

        let normed = norm(&self.weights.final_norm, &x)?;
        record(HookPoint::FinalNorm, &normed);
        let logits = if args.all_logits {
            self.weights.lm_head.forward(&normed)?
        } else {
            let last = normed.i((.., seq_len - 1, ..))?.contiguous()?;
            self.weights.lm_head.forward(&last)?
        };
        let trace = match collector {
            Some(Collector {
                embed: Some(embed),
                per_hook,
                ..
            }) => Some(TraceRecord::from_device(
                &embed,
                &per_hook,
                args.trace.map_or(0, |t| t.directions.len()),
                index_pos,
            )?),
            _ => None,
        };
        Ok(ForwardOutput {
            logits,
            trace,
            captures,
        })
    }

    /// Causal self-attention for one block, appending this call's keys and values to the cache.
    ///
    /// # Shapes
    /// `x`: `[batch, seq, hidden]` (already normed) -> `[batch, seq, hidden]`.
    fn attention(
        &self,
        bw: &BlockWeights,
        x: &Tensor,
        layer_idx: usize,
        cache: &mut KvCache,
        index_pos: usize,
        mask: Option<&Tensor>,
        differentiable: bool,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let hd = cfg.head_dim;
        let q =
            bw.q.forward(x)?
                .reshape((b, t, cfg.n_heads, hd))?
                .transpose(1, 2)?;
        let k =
            bw.k.forward(x)?
                .reshape((b, t, cfg.n_kv_heads, hd))?
                .transpose(1, 2)?;
        let v =
            bw.v.forward(x)?
                .reshape((b, t, cfg.n_kv_heads, hd))?
                .transpose(1, 2)?
                .contiguous()?;
        let cos = self.cos.narrow(0, index_pos, t)?;
        let sin = self.sin.narrow(0, index_pos, t)?;
        let rope = |x: Tensor| -> candle_core::Result<Tensor> {
            let x = x.contiguous()?;
            match (cfg.rope_interleaved, differentiable) {
                (true, false) => candle_nn::rotary_emb::rope_i(&x, &cos, &sin),
                (false, false) => candle_nn::rotary_emb::rope(&x, &cos, &sin),
                (true, true) => candle_nn::rotary_emb::rope_i_slow(&x, &cos, &sin),
                (false, true) => candle_nn::rotary_emb::rope_slow(&x, &cos, &sin),
            }
        };
        let q = rope(q)?;
        let k = rope(k)?;
        let (k, v) = match &cache.layers[layer_idx] {
            Some((ck, cv)) if index_pos > 0 => {
                (Tensor::cat(&[ck, &k], 2)?, Tensor::cat(&[cv, &v], 2)?)
            }
            _ => (k, v),
        };
        cache.layers[layer_idx] = Some((k.clone(), v.clone()));
        let n_rep = cfg.n_heads / cfg.n_kv_heads;
        let k = candle_transformers::utils::repeat_kv(k, n_rep)?;
        let v = candle_transformers::utils::repeat_kv(v, n_rep)?;
        let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let att = match mask {
            None => att,
            Some(m) => {
                let m = m.broadcast_as(att.shape())?;
                let neg_inf =
                    Tensor::new(f32::NEG_INFINITY, att.device())?.broadcast_as(att.shape())?;
                m.where_cond(&neg_inf, &att)?
            }
        };
        let att = if differentiable {
            candle_nn::ops::softmax(&att, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&att)?
        };
        let y = att.matmul(&v.contiguous()?)?;
        let y = y.transpose(1, 2)?.reshape((b, t, cfg.n_heads * hd))?;
        bw.o.forward(&y)
    }
}
