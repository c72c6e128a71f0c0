//! Logits against candle-transformers' own models: `quantized_llama` for GGUF, `llama` and
//! `qwen2` for HF safetensors. Prompt pass and KV-cache steps, within 1e-4 max abs.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, quantized_llama, qwen2};
use common::{max_abs_diff, Tiny};
use steerscope::model::{ForwardArgs, KvCache, Model};

const TOL: f32 = 1e-4;

/// Run ours on a prompt then `steps` single tokens; compare each step's last-token logits with
/// the reference closure `reference(input, index_pos) -> [vocab]`.
fn compare_with(
    model: &Model,
    prompt: &[u32],
    steps: &[u32],
    mut reference: impl FnMut(&Tensor, usize) -> Tensor,
) -> f32 {
    let tf = &model.transformer;
    let mut cache = KvCache::new(tf.cfg.n_layers);
    let args = ForwardArgs {
        prompt_len: prompt.len(),
        ..ForwardArgs::default()
    };
    // Each call appends `ids` to the cache and returns the last position's logits.
    let mut ours = |ids: &[u32]| {
        let input = common::ids_tensor(ids);
        let logits = tf
            .forward(&input, &mut cache, &args)
            .unwrap()
            .logits
            .i(0)
            .unwrap();
        (input, logits)
    };
    let (input, logits) = ours(prompt);
    // Guard against comparing two constant outputs.
    let spread = logits.max_all().unwrap().to_scalar::<f32>().unwrap()
        - logits.min_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(spread > 0.1, "logits are degenerate (spread {spread})");
    let mut worst = max_abs_diff(&logits, &reference(&input, 0));
    for (pos, &tok) in (prompt.len()..).zip(steps) {
        let (input, logits) = ours(&[tok]);
        worst = worst.max(max_abs_diff(&logits, &reference(&input, pos)));
    }
    worst
}

fn quantized_reference(path: &std::path::Path) -> quantized_llama::ModelWeights {
    let mut f = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    quantized_llama::ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap()
}

#[test]
fn smollm2_gguf_matches_candle_quantized_llama() {
    let path = common::smollm2();
    let model = Model::load_gguf(&path, &Device::Cpu).unwrap();
    let prompt = model.encode_chat("Write a poem about cats").unwrap();
    let mut reference = quantized_reference(&path);
    let worst = compare_with(&model, &prompt, &[504, 2821, 28, 905, 17], |x, pos| {
        reference.forward(x, pos).unwrap().i(0).unwrap()
    });
    assert!(worst <= TOL, "max abs logit difference {worst}");
}

#[test]
fn tiny_gguf_matches_candle_quantized_llama_for_several_quantizations() {
    let dir = tempfile::tempdir().unwrap();
    for (qtype, hidden, tie) in [
        (GgmlDType::Q8_0, 64, false),
        (GgmlDType::Q4_0, 64, true),
        (GgmlDType::Q4K, 256, false),
        (GgmlDType::Q6K, 256, true),
        (GgmlDType::F16, 64, false),
    ] {
        let t = Tiny {
            hidden,
            inter: 2 * hidden,
            tie,
            ..Tiny::default()
        };
        let path = dir.path().join(format!("tiny-{qtype:?}.gguf"));
        common::write_tiny_gguf(&path, &t, 7, qtype);
        let model = Model::load_gguf(&path, &Device::Cpu).unwrap();
        assert_eq!(model.info.format, "gguf");
        let mut reference = quantized_reference(&path);
        let worst = compare_with(&model, &[5, 17, 42, 99, 3, 250], &[11, 12, 13], |x, pos| {
            reference.forward(x, pos).unwrap().i(0).unwrap()
        });
        assert!(worst <= TOL, "{qtype:?}: max abs logit difference {worst}");
    }
}

fn candle_llama(folder: &std::path::Path) -> (llama::Llama, llama::Cache) {
    let cfg: llama::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    let cfg = cfg.into_config(false);
    let vb = VarBuilder::from_tensors(
        candle_core::safetensors::load(folder.join("model.safetensors"), &Device::Cpu).unwrap(),
        DType::F32,
        &Device::Cpu,
    );
    let model = llama::Llama::load(vb, &cfg).unwrap();
    let cache = llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    (model, cache)
}

#[test]
fn tiny_safetensors_llama_matches_candle_llama() {
    let dir = tempfile::tempdir().unwrap();
    for t in [
        Tiny::default(),
        Tiny {
            tie: true,
            kv_heads: 4,
            ..Tiny::default()
        },
        Tiny {
            llama3_rope: true,
            kv_heads: 1,
            ..Tiny::default()
        },
    ] {
        let folder = common::write_tiny_hf(dir.path(), &t, 11);
        let model = Model::load(folder.to_str().unwrap(), &Device::Cpu).unwrap();
        assert_eq!(model.info.format, "safetensors");
        let (reference, mut cache) = candle_llama(&folder);
        // Positions past original_max_position_embeddings (32) exercise the llama3 scaling.
        let prompt: Vec<u32> = (0..40).map(|i| (i * 37 % 300) as u32).collect();
        let worst = compare_with(&model, &prompt, &[7, 8, 9], |x, pos| {
            reference.forward(x, pos, &mut cache).unwrap().i(0).unwrap()
        });
        assert!(worst <= TOL, "{t:?}: max abs logit difference {worst}");
    }
}

#[test]
fn tiny_safetensors_qwen2_matches_candle_qwen2() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tiny {
        model_type: "qwen2",
        ..Tiny::default()
    };
    let folder = common::write_tiny_hf(dir.path(), &t, 13);
    let model = Model::load(folder.to_str().unwrap(), &Device::Cpu).unwrap();
    let cfg: qwen2::Config =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
            .unwrap();
    let vb = VarBuilder::from_tensors(
        candle_core::safetensors::load(folder.join("model.safetensors"), &Device::Cpu).unwrap(),
        DType::F32,
        &Device::Cpu,
    );
    let mut reference = qwen2::ModelForCausalLM::new(&cfg, vb).unwrap();
    let worst = compare_with(&model, &[3, 1, 4, 1, 5, 9, 2, 6], &[5, 3], |x, pos| {
        reference.forward(x, pos).unwrap().i((0, 0)).unwrap()
    });
    assert!(worst <= TOL, "max abs logit difference {worst}");
}

/// The training forward (slow, differentiable ops) computes the same logits as the inference
/// forward, at every position, for both RoPE layouts (HF halves and GGUF interleaved).
#[test]
fn differentiable_forward_matches_inference_forward() {
    let dir = tempfile::tempdir().unwrap();
    let folder = common::write_tiny_hf(dir.path(), &Tiny::default(), 5);
    let model = Model::load(folder.to_str().unwrap(), &Device::Cpu).unwrap();
    let hf = model.transformer.clone();
    let gguf_path = dir.path().join("tiny.gguf");
    common::write_tiny_gguf(&gguf_path, &Tiny::default(), 5, GgmlDType::F32);
    let gguf = Model::load(gguf_path.to_str().unwrap(), &Device::Cpu).unwrap();
    assert!(gguf.cfg().rope_interleaved && !hf.cfg.rope_interleaved);
    let ids: Vec<u32> = (0..24).map(|i| (i * 53 % 300) as u32).collect();
    let rev: Vec<u32> = ids.iter().rev().copied().collect();
    let both: Vec<u32> = ids.iter().chain(&rev).copied().collect();
    let input = Tensor::from_vec(both, (2, ids.len()), &Device::Cpu).unwrap();
    for tf in [&hf, &gguf.transformer] {
        let run = |differentiable: bool| {
            tf.forward(
                &input,
                &mut KvCache::new(tf.cfg.n_layers),
                &ForwardArgs {
                    all_logits: true,
                    differentiable,
                    ..ForwardArgs::default()
                },
            )
            .unwrap()
            .logits
        };
        let fast = run(false);
        let slow = run(true);
        assert_eq!(fast.dims(), &[2, 24, tf.cfg.vocab_size]);
        let diff = max_abs_diff(&fast, &slow);
        assert!(diff <= 1e-4, "max abs logit difference {diff}");
    }
}

/// `--dequantize` expands GGUF weights to f32: the same model up to the 8-bit activation
/// quantization of candle's quantized path (same top token, logits within a few percent).
#[test]
fn dequantized_gguf_tracks_the_quantized_model() {
    let path = common::smollm2();
    let q = Model::load(path.to_str().unwrap(), &Device::Cpu).unwrap();
    let d = Model::load_with(path.to_str().unwrap(), &Device::Cpu, true).unwrap();
    assert_eq!(
        d.info.quantization,
        format!("{} -> f32", q.info.quantization)
    );
    let ids = q.encode_chat("Write a poem about cats").unwrap();
    let input = common::ids_tensor(&ids);
    let run = |m: &Model| {
        m.transformer
            .forward(
                &input,
                &mut KvCache::new(m.cfg().n_layers),
                &ForwardArgs {
                    prompt_len: ids.len(),
                    ..ForwardArgs::default()
                },
            )
            .unwrap()
            .logits
            .i(0)
            .unwrap()
    };
    let (lq, ld) = (run(&q), run(&d));
    let argmax = |t: &Tensor| t.argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(argmax(&lq), argmax(&ld));
    let range = common::max_abs(&lq);
    let diff = max_abs_diff(&lq, &ld);
    assert!(
        diff < 0.05 * range,
        "max abs difference {diff} (logit scale {range})"
    );
}
