//! `steerscope trace`: per-layer, per-token norms and projections of one prompt.

use std::fmt::Write as _;
use std::path::PathBuf;

use candle_core::Tensor;
use clap::Args;
use serde_json::json;

use steerscope::hooks::{BlockHook, HookPoint, TraceSpec};
use steerscope::model::{ForwardArgs, KvCache};
use steerscope::vector::SteeringVector;

use super::{ModelArgs, PromptArgs};

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompt: PromptArgs,
    /// Direction to project onto (.safetensors steering vector).
    #[arg(long, short = 'v')]
    pub vector: Option<PathBuf>,
    /// For a per-layer vector file: the layer whose direction to use; default: the middle.
    #[arg(long, short = 'l')]
    pub layer: Option<usize>,
    /// Print every layer and token as JSON.
    #[arg(long)]
    pub json: bool,
    /// Capture the full activations at a hook point (TransformerLens name, e.g.
    /// `blocks.12.hook_resid_post`); repeatable. Written to --capture-out.
    #[arg(long, value_parser = parse_hook)]
    pub capture: Vec<HookPoint>,
    /// Safetensors file for --capture (tensors named by hook point, each [tokens, hidden]).
    #[arg(long, requires = "capture")]
    pub capture_out: Option<PathBuf>,
}

fn parse_hook(s: &str) -> Result<HookPoint, String> {
    s.parse::<HookPoint>().map_err(|e| e.to_string())
}

pub fn trace(a: &TraceArgs) -> anyhow::Result<()> {
    let model = a.model.load()?;
    let cfg = model.cfg().clone();
    let layer_idx = a.layer.unwrap_or(cfg.n_layers / 2);
    cfg.check_layer(layer_idx)?;
    let directions = match &a.vector {
        Some(p) => vec![SteeringVector::load_for(p, &model)?.for_layer(layer_idx)?],
        None => vec![],
    };
    let has_dir = !directions.is_empty();
    let ids = a.prompt.ids(&model)?;
    for hook in &a.capture {
        if let HookPoint::Block { layer_idx, .. } = hook {
            cfg.check_layer(*layer_idx)?;
        }
    }
    if !a.capture.is_empty() && a.capture_out.is_none() {
        return Err(steerscope::Error::InvalidValue {
            name: "--capture-out".into(),
            message: "missing (where should the captured activations go?)".into(),
        }
        .into());
    }
    let spec = TraceSpec {
        directions,
        summaries: true,
        capture: a.capture.clone(),
    };
    let n_tokens = ids.len();
    let input = Tensor::from_vec(ids.clone(), (1, n_tokens), model.transformer.device())?;
    let out = model.transformer.forward(
        &input,
        &mut KvCache::new(cfg.n_layers),
        &ForwardArgs {
            trace: Some(&spec),
            prompt_len: n_tokens,
            ..ForwardArgs::default()
        },
    )?;
    if let Some(path) = &a.capture_out {
        let map: std::collections::HashMap<String, Tensor> = out
            .captures
            .iter()
            .map(|(hook, t)| Ok((hook.to_string(), t.squeeze(0)?)))
            .collect::<candle_core::Result<_>>()?;
        candle_core::safetensors::save(&map, path)
            .map_err(|e| anyhow::anyhow!("{}: cannot write captures: {e}", path.display()))?;
        eprintln!(
            "wrote {} captured hook point(s) to {}",
            map.len(),
            path.display()
        );
    }
    let tr = out
        .trace
        .ok_or_else(|| anyhow::anyhow!("internal: the forward returned no trace"))?;
    let tokens = model.token_strings(&ids);
    let per_token = |f: &dyn Fn(usize) -> f32| -> Vec<f32> { (0..n_tokens).map(f).collect() };

    if a.json {
        let layers: Vec<_> = (0..cfg.n_layers)
            .map(|l| {
                let mut o = json!({
                    "layer": l,
                    "resid_pre_norm": per_token(&|t| tr.norm(BlockHook::ResidPre, l, 0, t)),
                    "attn_out_norm": per_token(&|t| tr.norm(BlockHook::AttnOut, l, 0, t)),
                    "resid_mid_norm": per_token(&|t| tr.norm(BlockHook::ResidMid, l, 0, t)),
                    "mlp_out_norm": per_token(&|t| tr.norm(BlockHook::MlpOut, l, 0, t)),
                    "resid_post_norm": per_token(&|t| tr.norm(BlockHook::ResidPost, l, 0, t)),
                });
                if has_dir {
                    o["attn_out_proj"] = json!(per_token(&|t| tr.projection(
                        BlockHook::AttnOut,
                        l,
                        0,
                        t,
                        0
                    )));
                    o["mlp_out_proj"] =
                        json!(per_token(&|t| tr.projection(BlockHook::MlpOut, l, 0, t, 0)));
                    o["resid_post_proj"] = json!(per_token(&|t| tr.projection(
                        BlockHook::ResidPost,
                        l,
                        0,
                        t,
                        0
                    )));
                }
                o
            })
            .collect();
        let mut doc = json!({
            "model": model.info,
            "vector": a.vector,
            "vector_layer": has_dir.then_some(layer_idx),
            "tokens": tokens,
            "token_ids": ids,
            "embed_norm": tr.embed.norms,
            "layers": layers,
        });
        if has_dir {
            doc["embed_proj"] = json!(tr.embed.projections);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }

    let last = n_tokens - 1;
    let mut s = String::new();
    writeln!(
        s,
        "{} ({} layers, hidden {}, {}), {} prompt tokens; values at the last token {:?}",
        model.info.path.display(),
        cfg.n_layers,
        cfg.hidden_size,
        model.info.quantization,
        n_tokens,
        tokens[last]
    )?;
    write!(
        s,
        "{:>5} {:>10} {:>10} {:>10}",
        "layer", "|resid|", "|attn|", "|mlp|"
    )?;
    if has_dir {
        write!(s, " {:>10} {:>10} {:>10}", "resid.d", "attn.d", "mlp.d")?;
    }
    s.push('\n');
    for l in 0..cfg.n_layers {
        write!(
            s,
            "{l:>5} {:>10.3} {:>10.3} {:>10.3}",
            tr.norm(BlockHook::ResidPost, l, 0, last),
            tr.norm(BlockHook::AttnOut, l, 0, last),
            tr.norm(BlockHook::MlpOut, l, 0, last)
        )?;
        if has_dir {
            write!(
                s,
                " {:>10.3} {:>10.3} {:>10.3}",
                tr.projection(BlockHook::ResidPost, l, 0, last, 0),
                tr.projection(BlockHook::AttnOut, l, 0, last, 0),
                tr.projection(BlockHook::MlpOut, l, 0, last, 0)
            )?;
        }
        s.push('\n');
    }
    print!("{s}");
    Ok(())
}
