//! Helpers shared by the integration tests: the real SmolLM2 model and tiny random-weight
//! models written to a temp folder (HF safetensors or GGUF).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// `SmolLM2-135M-Instruct` `Q4_1`, as `scripts/fetch-model.sh` places it. Tests that need it fail
/// (not skip) when it is missing: the test command fetches it.
pub fn smollm2() -> PathBuf {
    let path = std::env::var_os("STEERSCOPE_SMOLLM2").map_or_else(
        || {
            let cache = std::env::var_os("STEERSCOPE_CACHE").map_or_else(
                || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/steerscope"),
                PathBuf::from,
            );
            cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/fetch-model.sh` (the test command does)",
        path.display()
    );
    path
}

/// Deterministic test values: the library's splitmix64 stream, made roughly normal by summing
/// four uniforms (the fixtures' weights depend on exactly these values).
pub struct Rng(steerscope::rng::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(steerscope::rng::Rng::new(seed))
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() - 2.0
    }
    pub fn tensor(&mut self, shape: &[usize], scale: f32, offset: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + scale * self.normal()).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }
}

#[derive(Clone, Debug)]
pub struct Tiny {
    pub model_type: &'static str,
    pub hidden: usize,
    pub inter: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tie: bool,
    pub llama3_rope: bool,
}

impl Default for Tiny {
    fn default() -> Self {
        Self {
            model_type: "llama",
            hidden: 64,
            inter: 128,
            layers: 3,
            heads: 4,
            kv_heads: 2,
            vocab: 300,
            tie: false,
            llama3_rope: false,
        }
    }
}

/// HF-named random weights for a tiny model.
pub fn tiny_tensors(t: &Tiny, seed: u64) -> HashMap<String, Tensor> {
    let mut rng = Rng::new(seed);
    let hd = t.hidden / t.heads;
    let mut m = HashMap::new();
    m.insert(
        "model.embed_tokens.weight".into(),
        rng.tensor(&[t.vocab, t.hidden], 0.5, 0.0),
    );
    for l in 0..t.layers {
        let p = format!("model.layers.{l}");
        m.insert(
            format!("{p}.input_layernorm.weight"),
            rng.tensor(&[t.hidden], 0.1, 1.0),
        );
        m.insert(
            format!("{p}.post_attention_layernorm.weight"),
            rng.tensor(&[t.hidden], 0.1, 1.0),
        );
        m.insert(
            format!("{p}.self_attn.q_proj.weight"),
            rng.tensor(&[t.heads * hd, t.hidden], 0.15, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.k_proj.weight"),
            rng.tensor(&[t.kv_heads * hd, t.hidden], 0.15, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.v_proj.weight"),
            rng.tensor(&[t.kv_heads * hd, t.hidden], 0.15, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.o_proj.weight"),
            rng.tensor(&[t.hidden, t.heads * hd], 0.15, 0.0),
        );
        if t.model_type == "qwen2" {
            m.insert(
                format!("{p}.self_attn.q_proj.bias"),
                rng.tensor(&[t.heads * hd], 0.1, 0.0),
            );
            m.insert(
                format!("{p}.self_attn.k_proj.bias"),
                rng.tensor(&[t.kv_heads * hd], 0.1, 0.0),
            );
            m.insert(
                format!("{p}.self_attn.v_proj.bias"),
                rng.tensor(&[t.kv_heads * hd], 0.1, 0.0),
            );
        }
        m.insert(
            format!("{p}.mlp.gate_proj.weight"),
            rng.tensor(&[t.inter, t.hidden], 0.15, 0.0),
        );
        m.insert(
            format!("{p}.mlp.up_proj.weight"),
            rng.tensor(&[t.inter, t.hidden], 0.15, 0.0),
        );
        m.insert(
            format!("{p}.mlp.down_proj.weight"),
            rng.tensor(&[t.hidden, t.inter], 0.1, 0.0),
        );
    }
    m.insert(
        "model.norm.weight".into(),
        rng.tensor(&[t.hidden], 0.1, 1.0),
    );
    if !t.tie {
        m.insert(
            "lm_head.weight".into(),
            rng.tensor(&[t.vocab, t.hidden], 0.15, 0.0),
        );
    }
    m
}

pub fn tiny_config_json(t: &Tiny) -> serde_json::Value {
    let mut cfg = serde_json::json!({
        "model_type": t.model_type,
        "architectures": [if t.model_type == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "hidden_size": t.hidden,
        "intermediate_size": t.inter,
        "vocab_size": t.vocab,
        "num_hidden_layers": t.layers,
        "num_attention_heads": t.heads,
        "num_key_value_heads": t.kv_heads,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "tie_word_embeddings": t.tie,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "sliding_window": 256,
        "max_window_layers": t.layers,
        "use_sliding_window": false,
        "hidden_act": "silu",
    });
    if t.llama3_rope {
        cfg["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32
        });
    }
    cfg
}

/// A word-level tokenizer.json over `vocab` tokens `t0`..`tN` (ids only matter in these tests).
pub fn write_tokenizer_json(path: &Path, vocab: usize) {
    use tokenizers::models::wordlevel::WordLevel;
    let map: std::collections::HashMap<String, u32> =
        (0..vocab).map(|i| (format!("t{i}"), i as u32)).collect();
    let model = WordLevel::builder()
        .vocab(map.into_iter().collect())
        .unk_token("t0".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
    tok.save(path, false).unwrap();
}

/// Write a tiny HF folder; returns its path (inside `dir`).
pub fn write_tiny_hf(dir: &Path, t: &Tiny, seed: u64) -> PathBuf {
    let folder = dir.join(format!("tiny-{}", t.model_type));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("config.json"),
        serde_json::to_string_pretty(&tiny_config_json(t)).unwrap(),
    )
    .unwrap();
    candle_core::safetensors::save(&tiny_tensors(t, seed), folder.join("model.safetensors"))
        .unwrap();
    write_tokenizer_json(&folder.join("tokenizer.json"), t.vocab);
    std::fs::write(
        folder.join("tokenizer_config.json"),
        r#"{"bos_token": "t1", "eos_token": "t2", "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}"#,
    )
    .unwrap();
    folder
}

/// Write a tiny llama GGUF with weights quantized to `qtype` (norms stay F32).
pub fn write_tiny_gguf(path: &Path, t: &Tiny, seed: u64, qtype: GgmlDType) {
    use gguf_file::Value;
    let hf = tiny_tensors(t, seed);
    let q = |name: &str, dtype: GgmlDType| QTensor::quantize(&hf[name], dtype).unwrap();
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            q("model.embed_tokens.weight", qtype),
        ),
        (
            "output_norm.weight".into(),
            q("model.norm.weight", GgmlDType::F32),
        ),
    ];
    if !t.tie {
        tensors.push(("output.weight".into(), q("lm_head.weight", qtype)));
    }
    for l in 0..t.layers {
        let p = format!("model.layers.{l}");
        for (gguf, hfname, dt) in [
            ("attn_norm", "input_layernorm", GgmlDType::F32),
            ("ffn_norm", "post_attention_layernorm", GgmlDType::F32),
            ("attn_q", "self_attn.q_proj", qtype),
            ("attn_k", "self_attn.k_proj", qtype),
            ("attn_v", "self_attn.v_proj", qtype),
            ("attn_output", "self_attn.o_proj", qtype),
            ("ffn_gate", "mlp.gate_proj", qtype),
            ("ffn_up", "mlp.up_proj", qtype),
            ("ffn_down", "mlp.down_proj", qtype),
        ] {
            tensors.push((
                format!("blk.{l}.{gguf}.weight"),
                q(&format!("{p}.{hfname}.weight"), dt),
            ));
        }
    }
    let tokens: Vec<Value> = (0..t.vocab)
        .map(|i| Value::String(format!("t{i}")))
        .collect();
    let types: Vec<Value> = (0..t.vocab).map(|_| Value::I32(1)).collect();
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(t.layers as u32)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(t.hidden as u32)),
        ("llama.feed_forward_length", Value::U32(t.inter as u32)),
        ("llama.attention.head_count", Value::U32(t.heads as u32)),
        (
            "llama.attention.head_count_kv",
            Value::U32(t.kv_heads as u32),
        ),
        (
            "llama.rope.dimension_count",
            Value::U32((t.hidden / t.heads) as u32),
        ),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(vec![])),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

/// Token ids as a one-row batch, `[1, seq]`.
pub fn ids_tensor(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// Largest absolute value in `t`.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}
