//! The `steerscope` binary on bad input: exit code 2, one line naming the file or value and
//! what was expected, never a panic. And the happy paths on real weights.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use common::Tiny;

fn steerscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_steerscope"))
        .args(args)
        .output()
        .unwrap()
}

/// Run and assert success (stderr shown when it fails).
fn succeeds(args: &[&str]) -> Output {
    let out = steerscope(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Assert a clean failure: exit 2, no panic, one line on stderr containing every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    fails_with_env(args, &[], needles);
}

/// [`fails_with`], with extra environment variables.
fn fails_with_env(args: &[&str], env: &[(&str, &Path)], needles: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_steerscope"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked"), "panic for {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line for {args:?}, got: {stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "stderr for {args:?} lacks {n:?}: {stderr}"
        );
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    hf: PathBuf,
    gguf: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let hf = common::write_tiny_hf(&root, &Tiny::default(), 3);
    let gguf = root.join("tiny.gguf");
    common::write_tiny_gguf(&gguf, &Tiny::default(), 3, GgmlDType::Q8_0);
    Fixture {
        _dir: dir,
        root,
        hf,
        gguf,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_vector(path: &Path, width: usize, value: f32) {
    let t = Tensor::full(value, width, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("direction".to_string(), t)]),
        path,
    )
    .unwrap();
}

#[test]
fn missing_model_file() {
    fails_with(
        &["generate", "-m", "/no/such/model.gguf", "-p", "hi"],
        &["/no/such/model.gguf", "file not found"],
    );
}

#[test]
fn missing_hf_cache_id() {
    let f = fixture();
    fails_with_env(
        &["generate", "-m", "nobody/no-such-model", "-p", "hi"],
        &[("HF_HUB_CACHE", &f.root)],
        &["nobody/no-such-model", "not in the Hugging Face cache"],
    );
}

#[test]
fn truncated_and_corrupt_gguf() {
    let f = fixture();
    let bytes = std::fs::read(&f.gguf).unwrap();
    let truncated = f.root.join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    fails_with(
        &["generate", "-m", s(&truncated), "-p", "hi"],
        &["truncated.gguf", "truncated"],
    );
    let garbage = f.root.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all, just text").unwrap();
    fails_with(
        &["generate", "-m", s(&garbage), "-p", "hi"],
        &["garbage.gguf", "not a readable GGUF"],
    );
    let header_only = f.root.join("header.gguf");
    std::fs::write(&header_only, &bytes[..64]).unwrap();
    fails_with(
        &["generate", "-m", s(&header_only), "-p", "hi"],
        &["header.gguf"],
    );
}

#[test]
fn unknown_gguf_quantization() {
    let f = fixture();
    let mut bytes = std::fs::read(&f.gguf).unwrap();
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let dtype_at = at + 4 + 8 * n_dims;
    bytes[dtype_at..dtype_at + 4].copy_from_slice(&99u32.to_le_bytes());
    let bad = f.root.join("badquant.gguf");
    std::fs::write(&bad, bytes).unwrap();
    fails_with(
        &["generate", "-m", s(&bad), "-p", "hi"],
        &["badquant.gguf", "unsupported type", "Q4_0"],
    );
}

#[test]
fn truncated_safetensors_and_missing_tokenizer() {
    let f = fixture();
    let st = f.hf.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &["generate", "-m", s(&f.hf), "-p", "hi"],
        &["model.safetensors"],
    );
    std::fs::remove_file(f.hf.join("tokenizer.json")).unwrap();
    fails_with(
        &["generate", "-m", s(&f.hf), "-p", "hi"],
        &["tokenizer.json", "file not found"],
    );
}

#[test]
fn unknown_architecture() {
    let f = fixture();
    let cfg_path = f.hf.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["model_type"] = "gpt_neox".into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    fails_with(
        &["generate", "-m", s(&f.hf), "-p", "hi"],
        &["config.json", "gpt_neox", "llama, mistral, qwen2"],
    );
}

#[test]
fn vector_of_wrong_width_or_nan_or_missing() {
    let f = fixture();
    let narrow = f.root.join("narrow.safetensors");
    write_vector(&narrow, 100, 0.5);
    fails_with(
        &["steer", "-m", s(&f.gguf), "-v", s(&narrow), "-p", "t5 t6"],
        &["narrow.safetensors", "width 100", "hidden size 64"],
    );
    let nan = f.root.join("nan.safetensors");
    write_vector(&nan, 64, f32::NAN);
    fails_with(
        &["steer", "-m", s(&f.gguf), "-v", s(&nan), "-p", "t5"],
        &["nan.safetensors", "NaN"],
    );
    fails_with(
        &[
            "steer",
            "-m",
            s(&f.gguf),
            "-v",
            "/no/vec.safetensors",
            "-p",
            "t5",
        ],
        &["/no/vec.safetensors"],
    );
}

#[test]
fn layer_out_of_range() {
    let f = fixture();
    let v = f.root.join("v.safetensors");
    write_vector(&v, 64, 0.5);
    fails_with(
        &[
            "steer",
            "-m",
            s(&f.gguf),
            "-v",
            s(&v),
            "--layer",
            "99",
            "-p",
            "t5",
        ],
        &["layer 99", "3 layers"],
    );
}

#[test]
fn prompt_longer_than_the_context() {
    let f = fixture();
    let long = vec!["t7"; 400].join(" ");
    fails_with(
        &["generate", "-m", s(&f.hf), "--raw", "-p", &long],
        &["400 tokens", "context of 256"],
    );
    fails_with(
        &["trace", "-m", s(&f.hf), "--raw", "-p", &long],
        &["400 tokens", "context of 256"],
    );
}

#[test]
fn non_utf8_prompt_file() {
    let f = fixture();
    let p = f.root.join("latin1.txt");
    std::fs::write(&p, b"caf\xe9 au lait").unwrap();
    fails_with(
        &["generate", "-m", s(&f.hf), "--prompt-file", s(&p)],
        &["latin1.txt", "UTF-8"],
    );
}

#[test]
fn unknown_hook_name() {
    let f = fixture();
    let out = f.root.join("cap.safetensors");
    fails_with(
        &[
            "trace",
            "-m",
            s(&f.hf),
            "-p",
            "t5",
            "--capture",
            "blocks.1.hook_resid",
            "--capture-out",
            s(&out),
        ],
        &["blocks.1.hook_resid", "unknown hook point"],
    );
}

#[test]
fn trace_json_and_capture_on_a_tiny_model() {
    let f = fixture();
    let v = f.root.join("v.safetensors");
    write_vector(&v, 64, 0.5);
    let cap = f.root.join("cap.safetensors");
    let out = succeeds(&[
        "trace",
        "-m",
        s(&f.hf),
        "--raw",
        "-p",
        "t5 t6 t7",
        "-v",
        s(&v),
        "--json",
        "--capture",
        "blocks.2.hook_resid_post",
        "--capture-out",
        s(&cap),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["layers"].as_array().unwrap().len(), 3);
    assert_eq!(doc["tokens"].as_array().unwrap().len(), 3);
    assert_eq!(
        doc["layers"][2]["resid_post_proj"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let captured = candle_core::safetensors::load(&cap, &Device::Cpu).unwrap();
    assert_eq!(captured["blocks.2.hook_resid_post"].dims(), &[3, 64]);
}

#[test]
fn steer_on_smollm2_prints_both_columns() {
    let model = common::smollm2();
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("v.safetensors");
    let t = common::Rng::new(1).tensor(&[576], 1.0, 0.0);
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("direction".to_string(), t)]),
        &v,
    )
    .unwrap();
    let out = succeeds(&[
        "steer",
        "--model",
        s(&model),
        "--vector",
        s(&v),
        "--layer",
        "10",
        "--strength",
        "6",
        "--prompt",
        "Write a poem about cats",
        "--max-tokens",
        "12",
        "--ablate",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = doc["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(streams[0]["label"], "unsteered");
    assert!(streams
        .iter()
        .all(|st| !st["text"].as_str().unwrap().trim().is_empty()));
    assert_ne!(streams[0]["text"], streams[1]["text"]);
}

#[test]
fn help_lists_the_commands() {
    let out = steerscope(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["gui", "steer", "generate", "trace", "bench"] {
        assert!(text.contains(cmd), "{text}");
    }
}

/// `gui` checks its files before opening a window: one line, exit 2.
#[test]
fn gui_with_missing_files_fails_before_the_window() {
    fails_with(
        &["gui", "--model", "/nope/model.gguf"],
        &["/nope/model.gguf", "not found"],
    );
    fails_with(
        &["gui", "--vector", "/nope/v.safetensors"],
        &["/nope/v.safetensors", "steering vector"],
    );
}

#[test]
fn missing_required_argument_is_one_line() {
    fails_with(
        &["vector", "--negative", "x.txt", "-o", "v.safetensors"],
        &["--positive"],
    );
}

#[test]
fn vector_command_writes_the_mean_difference_per_layer() {
    let f = fixture();
    let pos = f.root.join("pos.txt");
    let neg = f.root.join("neg.json");
    std::fs::write(&pos, "t5 t6 t7\nt8 t9\n").unwrap();
    std::fs::write(&neg, r#"[{"instruction": "t10 t11"}, "t12"]"#).unwrap();
    let out_path = f.root.join("v.safetensors");
    succeeds(&[
        "vector",
        "-m",
        s(&f.hf),
        "--raw",
        "--positive",
        s(&pos),
        "--negative",
        s(&neg),
        "-o",
        s(&out_path),
    ]);
    let v = candle_core::safetensors::load(&out_path, &Device::Cpu).unwrap();
    assert_eq!(v.len(), 3);
    // Recompute layer 1 by hand from captures.
    let model = steerscope::model::Model::load(s(&f.hf), &Device::Cpu).unwrap();
    let last = |text: &str| {
        let ids = model.encode(text).unwrap();
        let hook = steerscope::hooks::HookPoint::block(1, steerscope::hooks::BlockHook::ResidPost);
        let spec = steerscope::hooks::TraceSpec {
            capture: vec![hook],
            ..Default::default()
        };
        let input = common::ids_tensor(ids.as_slice());
        let o = model
            .transformer
            .forward(
                &input,
                &mut steerscope::model::KvCache::new(3),
                &steerscope::model::ForwardArgs {
                    trace: Some(&spec),
                    ..Default::default()
                },
            )
            .unwrap();
        o.captures[&hook]
            .get(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap()
    };
    let mean_pos = ((last("t5 t6 t7") + last("t8 t9")).unwrap() / 2.0).unwrap();
    let mean_neg = ((last("t10 t11") + last("t12")).unwrap() / 2.0).unwrap();
    let expected = (mean_pos - mean_neg).unwrap();
    assert!(common::max_abs_diff(&v["direction.1"], &expected) < 1e-5);
    assert!(f.root.join("v.json").is_file(), "sidecar missing");
}

#[test]
fn steer_without_vector_uses_the_shipped_smollm2_vector() {
    let model = common::smollm2();
    let out = steerscope(&[
        "steer",
        "--model",
        s(&model),
        "--layer",
        "15",
        "--strength",
        "2",
        "--prompt",
        "Write a poem about cats",
        "--max-tokens",
        "16",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("smollm2-135m-instruct.cheerful-gloomy.safetensors"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unsteered") && text.contains("steered (layer 15, strength 2)"),
        "{text}"
    );
}

#[test]
fn empty_prompt_is_an_error_not_a_panic() {
    let f = fixture();
    fails_with(
        &["trace", "-m", s(&f.hf), "--raw", "-p", ""],
        &["expected at least one token"],
    );
    fails_with(
        &["generate", "-m", s(&f.hf), "--raw", "-p", ""],
        &["prompt", "empty"],
    );
}

/// With no `--model`, `steer` opens the embedded demo model with its shipped refusal direction
/// and the sidecar's layer and scope: the steered column refuses a harmless prompt.
#[test]
fn steer_defaults_to_the_demo_model_and_its_refusal_direction() {
    let out = steerscope(&[
        "steer",
        "--prompt",
        "Write a poem about cats",
        "--max-tokens",
        "12",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("demo-model.refusal.safetensors"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let unsteered = streams[0]["text"].as_str().unwrap();
    let steered = streams[1]["text"].as_str().unwrap();
    assert!(
        unsteered.contains("cats") && !unsteered.contains("sorry"),
        "{unsteered}"
    );
    assert!(steered.starts_with("I'm sorry"), "{steered}");
    assert!(
        streams[1]["label"].as_str().unwrap().contains("layer 3"),
        "{json}"
    );
}

/// `select` and `monitor` on the demo model: tables out, and their bad input fails cleanly.
#[test]
fn select_and_monitor_run_on_the_demo_model_and_refuse_bad_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = root.join("assets/demo-model");
    let vector = root.join("vectors/demo-model.refusal.safetensors");
    let prompts = demo.join("prompts");
    let out = succeeds(&[
        "select",
        "--model",
        s(&demo),
        "--vector",
        s(&vector),
        "--harmful",
        s(&prompts.join("harmful_train.json")),
        "--harmless",
        s(&prompts.join("harmless_train.json")),
        "--limit",
        "10",
        "--strengths",
        "1,3",
        "--scope",
        "prompt",
        "--json",
    ]);
    let sel: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sel["layers"].as_array().unwrap().len(), 6);
    assert!(sel["best_layer"].as_u64().is_some(), "{sel}");

    let out = succeeds(&[
        "monitor",
        "--checkpoints",
        s(&demo),
        s(&demo.join("rounds/round-20")),
        "--vector",
        s(&vector),
        "--prompts",
        s(&prompts.join("harmless_test.json")),
        "--limit",
        "30",
        "--json",
    ]);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rep["rows"].as_array().unwrap();
    assert_eq!(rep["layer_idx"], 5, "the sidecar's monitor_layer");
    assert!(rows[0]["refusal_rate"].as_f64().unwrap() < 0.2);
    assert!(rows[1]["refusal_rate"].as_f64().unwrap() > 0.8);
    assert!(rows[1]["projection"].as_f64() > rows[0]["projection"].as_f64());

    let f = fixture();
    let narrow = f.root.join("narrow.safetensors");
    write_vector(&narrow, 7, 1.0);
    fails_with(
        &[
            "select",
            "--model",
            s(&demo),
            "--vector",
            s(&narrow),
            "--harmful",
            s(&prompts.join("harmful_test.json")),
            "--harmless",
            s(&prompts.join("harmless_test.json")),
        ],
        &["7", "96"],
    );
    fails_with(
        &[
            "monitor",
            "--checkpoints",
            s(&demo),
            "--vector",
            s(&narrow),
            "--layer",
            "1",
            "--prompts",
            s(&prompts.join("harmless_test.json")),
        ],
        &["7", "96"],
    );
    // No --layer and no sidecar to take it from.
    let plain = f.root.join("plain.safetensors");
    write_vector(&plain, 96, 1.0);
    fails_with(
        &[
            "monitor",
            "--checkpoints",
            s(&demo),
            "--vector",
            s(&plain),
            "--prompts",
            s(&prompts.join("harmless_test.json")),
        ],
        &["--layer", "plain.safetensors"],
    );
    fails_with(
        &[
            "monitor",
            "--checkpoints",
            s(&f.root.join("nope")),
            "--vector",
            s(&vector),
            "--prompts",
            s(&prompts.join("harmless_test.json")),
        ],
        &["nope"],
    );
    // The output folder is checked before the extraction runs, not after.
    fails_with(
        &[
            "vector",
            "--model",
            s(&demo),
            "--positive",
            s(&prompts.join("harmful_test.json")),
            "--negative",
            s(&prompts.join("harmless_test.json")),
            "--out",
            s(&f.root.join("missing/v.safetensors")),
        ],
        &["missing", "does not exist"],
    );
}

/// `sweep`, `best-of-n` and `orthogonalize`: happy path on the demo model, and bad input fails
/// with one line naming the value.
#[test]
fn sweep_best_of_n_and_orthogonalize_on_the_demo_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vector = root.join("vectors/demo-model.refusal.safetensors");
    let prompts = root.join("assets/demo-model/prompts/harmless_test.json");
    let f = fixture();
    let csv = f.root.join("sweep.csv");
    succeeds(&[
        "sweep",
        "--vector",
        s(&vector),
        "--prompts",
        s(&prompts),
        "--limit",
        "10",
        "--layers",
        "3",
        "--strengths",
        "0,3",
        "--scope",
        "prompt",
        "--csv",
        s(&csv),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().next(), Some("layer,strength,refusal_rate,kl"));
    assert!(text.contains("\n3,3,"), "{text}");
    fails_with(
        &[
            "sweep",
            "--vector",
            s(&vector),
            "--prompts",
            s(&prompts),
            "--layers",
            "9",
        ],
        &["layer 9", "6 layers"],
    );
    // A custom judge: counting the helpful openers as refusals turns the answers into refusals.
    let judge = f.root.join("judge.txt");
    std::fs::write(&judge, "Sure\nHappy\nOf course\nHere\nOnce\nGood\n\n").unwrap();
    let out = succeeds(&[
        "sweep",
        "--vector",
        s(&vector),
        "--prompts",
        s(&prompts),
        "--limit",
        "20",
        "--layers",
        "3",
        "--strengths",
        "0",
        "--json",
        "--refusal-substrings",
        s(&judge),
    ]);
    let res: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(res["baseline_rate"].as_f64().unwrap() > 0.8, "{res}");
    let empty = f.root.join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    fails_with(
        &[
            "sweep",
            "--vector",
            s(&vector),
            "--prompts",
            s(&prompts),
            "--refusal-substrings",
            s(&empty),
        ],
        &["empty.txt", "no refusal substrings"],
    );
    let out = succeeds(&[
        "best-of-n",
        "--prompts",
        s(&prompts),
        "--limit",
        "3",
        "-n",
        "4",
        "--json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["refused"].as_array().unwrap().len(), 4);
    fails_with(
        &[
            "best-of-n",
            "--prompts",
            s(&prompts),
            "--vector",
            s(&vector),
        ],
        &["--layer"],
    );
    fails_with(
        &["best-of-n", "--prompts", s(&prompts), "-n", "0"],
        &["0", "at least one sample"],
    );
    let orth = f.root.join("orth");
    succeeds(&[
        "orthogonalize",
        "--model",
        s(&root.join("assets/demo-model")),
        "--vector",
        s(&vector),
        "--layer",
        "3",
        "--out",
        s(&orth),
    ]);
    assert!(orth.join("model.safetensors").is_file() && orth.join("tokenizer.json").is_file());
    // A GGUF checkpoint too (the tiny fixture), loadable afterwards.
    let v64 = f.root.join("v64.safetensors");
    write_vector(&v64, 64, 0.5);
    let orth_gguf = f.root.join("orth.gguf");
    succeeds(&[
        "orthogonalize",
        "--model",
        s(&f.gguf),
        "--vector",
        s(&v64),
        "--layer",
        "1",
        "--out",
        s(&orth_gguf),
    ]);
    let m = steerscope::model::Model::load(s(&orth_gguf), &Device::Cpu).unwrap();
    assert_eq!(m.cfg().n_layers, 3);
    fails_with(
        &[
            "orthogonalize",
            "--model",
            s(&f.gguf),
            "--vector",
            s(&vector),
            "--layer",
            "1",
            "--out",
            s(&orth_gguf),
        ],
        &["96", "64"],
    );
}
