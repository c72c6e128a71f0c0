//! Steering vectors from contrastive prompt sets: the difference of mean activations at the
//! last prompt token, at every layer's output (`blocks.{l}.hook_resid_post`).

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

/// Mean of `blocks.{l}.hook_resid_post` at each prompt's last token, for every layer.
/// `progress(done, total)` is called after each prompt.
///
/// # Shapes
/// Returns `[n_layers, hidden]`.
pub fn mean_last_token_activations(
    model: &Model,
    prompts: &[String],
    chat: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let tf = &model.transformer;
    let n_layers = tf.cfg.n_layers;
    let spec = TraceSpec {
        capture: (0..n_layers)
            .map(|l| HookPoint::block(l, BlockHook::ResidPost))
            .collect(),
        ..TraceSpec::default()
    };
    let mut sum = Tensor::zeros((n_layers, tf.cfg.hidden_size), DType::F32, tf.device())?;
    for (i, p) in prompts.iter().enumerate() {
        let ids = if chat {
            model.encode_chat(p)?
        } else {
            model.encode(p)?
        };
        let n = ids.len();
        let input = Tensor::new(ids.as_slice(), tf.device())?.unsqueeze(0)?;
        let out = tf.forward(
            &input,
            &mut KvCache::new(n_layers),
            &ForwardArgs {
                trace: Some(&spec),
                prompt_len: n,
                ..ForwardArgs::default()
            },
        )?;
        let mut rows = Vec::with_capacity(n_layers);
        for hook in &spec.capture {
            let act = out
                .captures
                .get(hook)
                .ok_or_else(|| Error::invalid("capture", format!("{hook} was not captured")))?;
            rows.push(act.i((0, n - 1))?);
        }
        sum = (sum + Tensor::stack(&rows, 0)?)?;
        progress(i + 1, prompts.len());
    }
    Ok((sum / prompts.len() as f64)?)
}

/// Difference of means (positive minus negative), one direction per layer.
///
/// # Shapes
/// Returns `[n_layers, hidden]`.
pub fn mean_difference(
    model: &Model,
    positive: &[String],
    negative: &[String],
    chat: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let total = positive.len() + negative.len();
    let pos = mean_last_token_activations(model, positive, chat, &mut |d, _| progress(d, total))?;
    let neg = mean_last_token_activations(model, negative, chat, &mut |d, _| {
        progress(positive.len() + d, total);
    })?;
    Ok((pos - neg)?)
}
