//! Steering vectors from contrastive prompt sets, at every layer's output
//! (`blocks.{l}.hook_resid_post`): the difference of mean activations, or the first principal
//! component of paired differences (repeng's `pca_diff`), at chosen prompt positions.
//!
//! Prompts run in batches, right-padded: with causal attention a real token never attends to
//! the padding after it, so the causal mask is the attention mask and every real token's
//! activations are exactly those of an unpadded run (`tests/extract.rs` checks this).

use candle_core::{DType, IndexOp, Tensor};

use crate::error::{Error, Result};
use crate::hooks::{BlockHook, HookPoint, TraceSpec};
use crate::model::{ForwardArgs, KvCache, Model};

/// Read a UTF-8 text file (a prompt or a prompt list), naming the file when it is not UTF-8.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Read a prompt list: a JSON array of strings or of `{"instruction": ...}` objects, or plain
/// text with one prompt per non-empty line.
pub fn read_prompts(path: &std::path::Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    let prompts: Vec<String> = if text.trim_start().starts_with('[') {
        let json: Vec<serde_json::Value> = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a JSON array of prompts: {e}")))?;
        json.iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                other => other
                    .get("instruction")
                    .and_then(|i| i.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Error::bad_file(
                            path,
                            "array items must be strings or {\"instruction\": ...} objects",
                        )
                    }),
            })
            .collect::<Result<_>>()?
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if prompts.is_empty() {
        return Err(Error::bad_file(path, "holds no prompts"));
    }
    Ok(prompts)
}

/// Which prompt positions a prompt's activation is read at (averaged when several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// The last prompt token (with the chat template: the end of the assistant header).
    Last,
    /// The `k`-th token from the end (`-1` is [`Positions::Last`]); Arditi et al. search -1..-5.
    FromEnd(usize),
    /// The chat template's tokens after the user's message (end of turn, assistant header).
    PostInstruction,
    /// Every prompt token.
    Mean,
}

impl std::fmt::Display for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Last => f.write_str("last"),
            Self::FromEnd(k) => write!(f, "-{k}"),
            Self::PostInstruction => f.write_str("post-instruction"),
            Self::Mean => f.write_str("mean"),
        }
    }
}

impl std::str::FromStr for Positions {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" | "-1" => Ok(Self::Last),
            "post-instruction" => Ok(Self::PostInstruction),
            "mean" => Ok(Self::Mean),
            _ => match s.strip_prefix('-').and_then(|k| k.parse::<usize>().ok()) {
                Some(k) if k >= 1 => Ok(Self::FromEnd(k)),
                _ => Err(Error::invalid(
                    "positions",
                    format!("`{s}` (expected last, -K for the K-th token from the end, post-instruction or mean)"),
                )),
            },
        }
    }
}

/// How a direction is computed from the two sets' activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Mean of the positive set minus mean of the negative set.
    MeanDiff,
    /// First principal component of paired differences (positive i minus negative i), oriented
    /// toward the positive set and scaled by the mean separation along it.
    PcaDiff,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean-diff" => Ok(Self::MeanDiff),
            "pca-diff" => Ok(Self::PcaDiff),
            _ => Err(Error::invalid(
                "method",
                format!("`{s}` (expected mean-diff or pca-diff)"),
            )),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MeanDiff => "mean-diff",
            Self::PcaDiff => "pca-diff",
        })
    }
}

/// Options of an extraction.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    pub positions: Positions,
    /// Apply the chat template.
    pub chat: bool,
    /// Prompts per forward pass.
    pub batch_size: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            positions: Positions::Last,
            chat: true,
            batch_size: 16,
        }
    }
}

/// Per prompt, the residual stream after every block, pooled over `opts.positions`.
/// `progress(done, total)` is called after each batch.
///
/// # Shapes
/// Returns `[n_prompts, n_layers, hidden]` (f32), in the order of `prompts`.
pub fn activations(
    model: &Model,
    prompts: &[String],
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let tf = &model.transformer;
    let n_layers = tf.cfg.n_layers;
    let dev = tf.device();
    if prompts.is_empty() {
        return Err(Error::invalid(
            "prompts",
            "none given (expected at least one)",
        ));
    }
    let mut encoded = Vec::with_capacity(prompts.len());
    for p in prompts {
        let (ids, n_post) = if opts.chat {
            model.encode_chat_split(p)?
        } else {
            (model.encode_prompt(p, false)?, 0)
        };
        if ids.is_empty() {
            return Err(Error::invalid(
                "prompt",
                format!("`{p}` encodes to no tokens"),
            ));
        }
        if ids.len() > tf.cfg.context_len {
            return Err(Error::PromptTooLong {
                n_tokens: ids.len(),
                max_new_tokens: 0,
                context_len: tf.cfg.context_len,
            });
        }
        // Positions to pool, as (first, end) over this prompt's tokens.
        let n = ids.len();
        let span = match opts.positions {
            Positions::Last => (n - 1, n),
            Positions::FromEnd(k) => {
                if k > n {
                    return Err(Error::invalid(
                        "positions",
                        format!("-{k} but `{p}` has only {n} tokens"),
                    ));
                }
                (n - k, n - k + 1)
            }
            Positions::PostInstruction => {
                if n_post == 0 {
                    return Err(Error::invalid(
                        "positions",
                        "post-instruction needs a chat template with tokens after the user's message",
                    ));
                }
                (n - n_post.min(n), n)
            }
            Positions::Mean => (0, n),
        };
        encoded.push((ids, span));
    }
    // Batch prompts of similar length together (less padding), keep the output order.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| encoded[i].0.len());
    let spec = TraceSpec {
        capture: (0..n_layers)
            .map(|l| HookPoint::block(l, BlockHook::ResidPost))
            .collect(),
        ..TraceSpec::default()
    };
    let mut rows: Vec<Option<Tensor>> = vec![None; prompts.len()];
    let batch_size = opts.batch_size.max(1);
    let mut done = 0;
    for chunk in order.chunks(batch_size) {
        let t = chunk.iter().map(|&i| encoded[i].0.len()).max().unwrap_or(1);
        let mut ids = vec![0u32; chunk.len() * t];
        for (r, &i) in chunk.iter().enumerate() {
            let e = &encoded[i].0;
            ids[r * t..r * t + e.len()].copy_from_slice(e);
        }
        let input = Tensor::from_vec(ids, (chunk.len(), t), dev)?;
        let out = tf.forward(
            &input,
            &mut KvCache::new(n_layers),
            &ForwardArgs {
                trace: Some(&spec),
                prompt_len: t,
                ..ForwardArgs::default()
            },
        )?;
        // [layers, batch, t, hidden]
        let mut per_layer = Vec::with_capacity(n_layers);
        for hook in &spec.capture {
            let act = out
                .captures
                .get(hook)
                .ok_or_else(|| Error::invalid("capture", format!("{hook} was not captured")))?;
            per_layer.push(act.to_dtype(DType::F32)?);
        }
        let stacked = Tensor::stack(&per_layer, 0)?;
        for (r, &i) in chunk.iter().enumerate() {
            let (a, b) = encoded[i].1;
            // [layers, hidden]
            let pooled = stacked.i((.., r, a..b, ..))?.mean(1)?;
            rows[i] = Some(pooled);
        }
        done += chunk.len();
        progress(done, prompts.len());
    }
    let rows: Vec<Tensor> = rows.into_iter().flatten().collect();
    Ok(Tensor::stack(&rows, 0)?)
}

/// Mean of `blocks.{l}.hook_resid_post` at each prompt's last token, for every layer.
///
/// # Shapes
/// Returns `[n_layers, hidden]`.
pub fn mean_last_token_activations(
    model: &Model,
    prompts: &[String],
    chat: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let opts = ExtractOptions {
        chat,
        ..ExtractOptions::default()
    };
    Ok(activations(model, prompts, &opts, progress)?.mean(0)?)
}

/// A direction per layer from the positive and negative sets (positive minus negative).
/// `progress(done, total)` counts prompts of both sets.
///
/// # Shapes
/// Returns `[n_layers, hidden]`.
pub fn direction(
    model: &Model,
    positive: &[String],
    negative: &[String],
    method: Method,
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let total = positive.len() + negative.len();
    let pos = activations(model, positive, opts, &mut |d, _| progress(d, total))?;
    let neg = activations(model, negative, opts, &mut |d, _| {
        progress(positive.len() + d, total);
    })?;
    match method {
        Method::MeanDiff => Ok((pos.mean(0)? - neg.mean(0)?)?),
        Method::PcaDiff => pca_diff(&pos, &neg),
    }
}

/// First principal component of the paired differences `pos[i] - neg[i]` (the first
/// `min(n_pos, n_neg)` pairs), per layer, by power iteration on the centred differences. The
/// unit component is oriented so the positive set projects higher, and scaled by the mean
/// separation `mean(pos . u) - mean(neg . u)`, so strength 1 moves about one set's width.
///
/// # Shapes
/// `pos`: `[n_pos, layers, hidden]`, `neg`: `[n_neg, layers, hidden]` -> `[layers, hidden]`.
pub fn pca_diff(pos: &Tensor, neg: &Tensor) -> Result<Tensor> {
    let n = pos.dim(0)?.min(neg.dim(0)?);
    if n < 2 {
        return Err(Error::invalid(
            "pca-diff",
            format!("needs at least 2 prompt pairs, got {n}"),
        ));
    }
    let (_, n_layers, hidden) = pos.dims3()?;
    let mut out = Vec::with_capacity(n_layers);
    for l in 0..n_layers {
        let p = pos.i((.., l, ..))?;
        let q = neg.i((.., l, ..))?;
        let diffs = (p.narrow(0, 0, n)? - q.narrow(0, 0, n)?)?;
        let centred = diffs.broadcast_sub(&diffs.mean_keepdim(0)?)?;
        // Power iteration on C = X^T X, started from the mean difference (deterministic).
        let mut u = (p.mean(0)? - q.mean(0)?)?.reshape((hidden, 1))?;
        for _ in 0..200 {
            let v = centred.t()?.matmul(&centred.matmul(&u)?)?;
            let norm = v.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            if !norm.is_finite() || norm == 0.0 {
                break;
            }
            u = (v / f64::from(norm))?;
        }
        let norm = u.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
        let u = (u / f64::from(norm.max(f32::MIN_POSITIVE)))?.reshape(hidden)?;
        let sep = ((p.mean(0)? - q.mean(0)?)? * &u)?
            .sum_all()?
            .to_scalar::<f32>()?;
        out.push((u * f64::from(sep))?);
    }
    Ok(Tensor::stack(&out, 0)?)
}
