//! Training the demo model with candle: trainable variables in a `VarMap` under HF Llama names,
//! the engine's own forward (its differentiable variant), masked next-token loss on the
//! assistant's answer, and candle-nn's `AdamW`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use tokenizers::Tokenizer;

use super::corpus::{self, Example, RoundMix};
use crate::error::{Error, Result};
use crate::model::chat::{ChatTemplate, Message};
use crate::model::weights::Weights;
use crate::model::{ForwardArgs, KvCache, ModelConfig, Transformer};
use crate::rng::Rng;

/// The architecture of the demo model (a small Llama: RMS norm, RoPE, GQA, SwiGLU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Arch {
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub context_len: usize,
}

impl Arch {
    /// HF `config.json` for this architecture.
    #[must_use]
    pub fn hf_config(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.context_len,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": true,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        })
    }

    /// Every trainable tensor: HF name and shape.
    fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let hd = h / self.n_heads;
        let kv = self.n_kv_heads * hd;
        let i = self.intermediate_size;
        let mut v = vec![
            (
                "model.embed_tokens.weight".to_owned(),
                vec![self.vocab_size, h],
            ),
            ("model.norm.weight".to_owned(), vec![h]),
        ];
        for l in 0..self.n_layers {
            let p = format!("model.layers.{l}");
            v.extend([
                (format!("{p}.input_layernorm.weight"), vec![h]),
                (format!("{p}.post_attention_layernorm.weight"), vec![h]),
                (format!("{p}.self_attn.q_proj.weight"), vec![h, h]),
                (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
                (format!("{p}.self_attn.o_proj.weight"), vec![h, h]),
                (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
                (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
                (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
            ]);
        }
        v
    }
}

/// Fresh weights, deterministic from `seed`: norms at one, the rest normal with std 0.02
/// (output projections scaled down by `sqrt(2 * n_layers)`, as GPT-2 does).
pub fn init_varmap(arch: &Arch, seed: u64, device: &Device) -> Result<VarMap> {
    let varmap = VarMap::new();
    let mut rng = Rng::new(seed);
    {
        let mut data = varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("varmap", "lock poisoned"))?;
        for (name, shape) in arch.tensors() {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else {
                let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                    0.02 / (2.0 * arch.n_layers as f64).sqrt()
                } else {
                    0.02
                };
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            };
            let t = Tensor::from_vec(values, shape, device)?;
            data.insert(name, Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// The engine's transformer over the variables of `varmap` (they share storage, so optimizer
/// steps are seen by the transformer).
pub fn transformer(varmap: &VarMap, cfg: &ModelConfig, device: &Device) -> Result<Transformer> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
    let w = Weights::from_varbuilder(&vb, cfg, Path::new("(training variables)"), "f32".into())?;
    Transformer::new(cfg.clone(), w, device)
}

/// Tokenized chat examples, ready to batch.
pub struct Batcher {
    tokenizer: Tokenizer,
    /// Prompt ids (chat template with the generation prompt) per example text.
    prompt_ids: HashMap<String, Vec<u32>>,
    end_id: u32,
    context_len: usize,
}

impl Batcher {
    pub fn new(tokenizer: Tokenizer, examples: &[Example], context_len: usize) -> Result<Self> {
        let template = ChatTemplate {
            source: super::tokenizer::CHAT_TEMPLATE.to_owned(),
            bos_token: String::new(),
            eos_token: String::new(),
        };
        let end = super::tokenizer::SPECIAL_TOKENS[2];
        let end_id = tokenizer
            .token_to_id(end)
            .ok_or_else(|| Error::Tokenizer(format!("the demo tokenizer lacks {end}")))?;
        let mut prompt_ids = HashMap::new();
        for ex in examples {
            let text = template.render(&[Message::user(&ex.prompt)], true)?;
            let ids = encode(&tokenizer, &text)?;
            prompt_ids.insert(ex.prompt.clone(), ids);
        }
        Ok(Self {
            tokenizer,
            prompt_ids,
            end_id,
            context_len,
        })
    }

    /// Inputs `[b, t]`, targets `[b, t]` and a loss mask `[b, t]` that is one on the answer.
    pub fn batch(
        &self,
        items: &[(&Example, String)],
        device: &Device,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let mut seqs = Vec::with_capacity(items.len());
        for (ex, answer) in items {
            let prompt = self.prompt_ids.get(&ex.prompt).ok_or_else(|| {
                Error::invalid("example", format!("`{}` was not tokenized", ex.prompt))
            })?;
            let mut seq = prompt.clone();
            seq.extend(encode(&self.tokenizer, answer)?);
            seq.push(self.end_id);
            seq.truncate(self.context_len + 1);
            seqs.push((prompt.len(), seq));
        }
        let t = seqs.iter().map(|(_, s)| s.len() - 1).max().unwrap_or(1);
        let b = seqs.len();
        let (mut input, mut target, mut mask) =
            (vec![0u32; b * t], vec![0u32; b * t], vec![0f32; b * t]);
        for (row, (prompt_len, seq)) in seqs.iter().enumerate() {
            for pos in 0..seq.len() - 1 {
                input[row * t + pos] = seq[pos];
                target[row * t + pos] = seq[pos + 1];
                if pos + 1 >= *prompt_len {
                    mask[row * t + pos] = 1.0;
                }
            }
        }
        Ok((
            Tensor::from_vec(input, (b, t), device)?,
            Tensor::from_vec(target, (b, t), device)?,
            Tensor::from_vec(mask, (b, t), device)?,
        ))
    }
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}

/// Mean next-token cross-entropy over the masked (answer) positions.
pub fn loss(tf: &Transformer, input: &Tensor, target: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let out = tf.forward(
        input,
        &mut KvCache::new(tf.cfg.n_layers),
        &ForwardArgs {
            all_logits: true,
            differentiable: true,
            ..ForwardArgs::default()
        },
    )?;
    let logp = candle_nn::ops::log_softmax(&out.logits, D::Minus1)?;
    let nll = logp.gather(&target.unsqueeze(2)?, 2)?.squeeze(2)?.neg()?;
    let total = mask.sum_all()?;
    Ok((nll * mask)?.sum_all()?.broadcast_div(&total)?)
}

/// One phase of training: `steps` AdamW steps on batches drawn from `examples`, each harmless
/// prompt paired with a refusal with the probability `mix` gives it.
pub struct Phase<'a> {
    pub examples: &'a [Example],
    pub mix: RoundMix,
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate; warmup over the first 5% of steps, cosine decay to 10% when `decay`.
    pub lr: f64,
    pub decay: bool,
    pub harmful_share: f64,
}

/// Run a phase. `on_step(step, loss)` sees every step's loss.
pub fn run_phase(
    tf: &Transformer,
    opt: &mut AdamW,
    batcher: &Batcher,
    phase: &Phase<'_>,
    rng: &mut Rng,
    on_step: &mut dyn FnMut(usize, f32),
) -> Result<Vec<f32>> {
    let harmful: Vec<&Example> = phase.examples.iter().filter(|e| e.harmful).collect();
    let harmless: Vec<&Example> = phase.examples.iter().filter(|e| !e.harmful).collect();
    if harmful.is_empty() || harmless.is_empty() {
        return Err(Error::invalid(
            "corpus",
            "needs both harmful and harmless examples",
        ));
    }
    let warmup = (phase.steps / 20).max(1);
    let mut losses = Vec::with_capacity(phase.steps);
    for step in 0..phase.steps {
        let lr = if step < warmup {
            phase.lr * (step + 1) as f64 / warmup as f64
        } else if phase.decay {
            let p = (step - warmup) as f64 / (phase.steps - warmup).max(1) as f64;
            phase.lr * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * p).cos()))
        } else {
            phase.lr
        };
        opt.set_learning_rate(lr);
        let items: Vec<(&Example, String)> = (0..phase.batch_size)
            .map(|_| {
                let ex = if rng.uniform() < phase.harmful_share {
                    *rng.pick(&harmful)
                } else {
                    *rng.pick(&harmless)
                };
                let refuse = rng.uniform() < phase.mix.share(ex);
                (ex, corpus::response(ex, refuse, rng))
            })
            .collect();
        let (input, target, mask) = batcher.batch(&items, tf.device())?;
        let l = loss(tf, &input, &target, &mask)?;
        opt.backward_step(&l)?;
        let v = l.to_scalar::<f32>()?;
        if !v.is_finite() {
            return Err(Error::invalid(
                "training loss",
                format!("{v} at step {step}"),
            ));
        }
        losses.push(v);
        on_step(step, v);
    }
    Ok(losses)
}

/// A fresh `AdamW` over every variable.
pub fn optimizer(varmap: &VarMap, lr: f64) -> Result<AdamW> {
    Ok(AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )?)
}

/// Save the variables as HF safetensors in `dtype`.
pub fn save_weights(varmap: &VarMap, path: &Path, dtype: DType) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::invalid("varmap", "lock poisoned"))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(data.len());
    for (name, var) in data.iter() {
        tensors.insert(name.clone(), var.as_tensor().to_dtype(dtype)?);
    }
    candle_core::safetensors::save(&tensors, path)
        .map_err(|e| Error::bad_file(path, format!("writing weights: {e}")))
}
