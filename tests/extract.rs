//! Vector extraction (batched, positions, PCA) and vector files: GGUF control vectors checked
//! against the Python `gguf` package (the way repeng writes them), `.pt` and `.npy` readers, and
//! bad files refused with clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Exact equality is the point where these tests compare floats: bit-identical paths.
#![allow(clippy::float_cmp)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, IndexOp, Tensor};
use steerscope::extract::{activations, pca_diff, ExtractOptions, Positions};
use steerscope::model::Model;
use steerscope::vector::{save, SteeringVector};
use steerscope::Error;

fn demo() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model");
    Model::load_hf(&dir, &Device::Cpu).unwrap()
}

fn python(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/vectors.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (the test command installs it and the gguf package)");
    assert!(
        out.status.success(),
        "python {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn prompts() -> Vec<String> {
    [
        "Write a poem about cats.",
        "How do I bake bread?",
        "Explain how to build a pipe bomb.",
        "Tell me a story about a chef cooking pasta, please, with lots of detail and a twist.",
        "What is 3 plus 4?",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Right-padded batches give every prompt the activations of its own unpadded run, at every
/// position choice, on dense (demo) and quantized (SmolLM2) weights.
#[test]
fn batched_extraction_equals_one_prompt_at_a_time() {
    let smollm2 = Model::load(common::smollm2().to_str().unwrap(), &Device::Cpu).unwrap();
    for model in [demo(), smollm2] {
        for positions in [
            Positions::Last,
            Positions::FromEnd(3),
            Positions::PostInstruction,
            Positions::Mean,
        ] {
            let run = |batch_size| {
                let opts = ExtractOptions {
                    positions,
                    chat: true,
                    batch_size,
                };
                activations(&model, &prompts(), &opts, &mut |_, _| {}).unwrap()
            };
            let one = run(1);
            let all = run(5);
            assert_eq!(
                one.dims(),
                &[5, model.cfg().n_layers, model.cfg().hidden_size]
            );
            let scale = common::max_abs(&one);
            let diff = common::max_abs_diff(&one, &all);
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "{positions:?}: batched differs by {diff} (scale {scale})"
            );
        }
    }
}

/// Position choices read the tokens they name: `-1` is the last token, the post-instruction
/// tokens of ChatML are `<|im_end|>\n<|im_start|>assistant\n`, and `mean` averages them all.
#[test]
fn positions_pick_the_tokens_they_name() {
    let model = demo();
    let p = vec!["Write a poem about cats.".to_owned()];
    let (ids, n_post) = model.encode_chat_split(&p[0]).unwrap();
    let post: String = model.token_strings(&ids[ids.len() - n_post..]).concat();
    assert_eq!(post, "<|im_end|>\n<|im_start|>assistant\n");
    let get = |positions| {
        let opts = ExtractOptions {
            positions,
            ..ExtractOptions::default()
        };
        activations(&model, &p, &opts, &mut |_, _| {})
            .unwrap()
            .i(0)
            .unwrap()
    };
    assert_eq!(
        common::max_abs_diff(&get(Positions::Last), &get(Positions::FromEnd(1))),
        0.0
    );
    // The mean over the post-instruction tokens is the mean of the single positions.
    let singles: Vec<Tensor> = (1..=n_post).map(|k| get(Positions::FromEnd(k))).collect();
    let mean = Tensor::stack(&singles, 0).unwrap().mean(0).unwrap();
    assert!(common::max_abs_diff(&mean, &get(Positions::PostInstruction)) < 1e-5);
    assert!(common::max_abs_diff(&get(Positions::Mean), &get(Positions::Last)) > 1e-3);
    let err = "-99".parse::<Positions>().map(|pos| {
        let opts = ExtractOptions {
            positions: pos,
            ..ExtractOptions::default()
        };
        activations(&model, &p, &opts, &mut |_, _| {})
    });
    assert!(
        matches!(err, Ok(Err(Error::InvalidValue { .. }))),
        "{err:?}"
    );
    assert!("middle".parse::<Positions>().is_err());
}

/// PCA of paired differences finds the axis the differences vary along, oriented toward the
/// positive set and scaled by the separation along it.
#[test]
fn pca_diff_recovers_the_axis_of_variation() {
    let mut rng = common::Rng::new(4);
    let (n, hidden) = (40, 16);
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for i in 0..n {
        let a = 2.0 + (i % 5) as f32; // separation varies along axis 3 only
        for h in 0..hidden {
            let base = rng.normal();
            neg.push(base);
            pos.push(base + if h == 3 { a } else { 0.01 * rng.normal() });
        }
    }
    let pos = Tensor::from_vec(pos, (n, 1, hidden), &Device::Cpu).unwrap();
    let neg = Tensor::from_vec(neg, (n, 1, hidden), &Device::Cpu).unwrap();
    let d = pca_diff(&pos, &neg)
        .unwrap()
        .i(0)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let norm = d.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(d[3] / norm > 0.999, "{d:?}");
    // Mean separation along the axis: mean of 2..6 over the cycle = 4.
    assert!((norm - 4.0).abs() < 0.05, "norm {norm}");
}

fn directions(n_layers: usize, hidden: usize) -> Vec<(usize, Tensor)> {
    (0..n_layers)
        .map(|l| {
            let v: Vec<f32> = (0..hidden).map(|i| l as f32 + i as f32 / 1000.0).collect();
            (l, Tensor::new(v, &Device::Cpu).unwrap())
        })
        .collect()
}

/// Ours -> `gguf` package: the numbers and llama.cpp's keys as written. `gguf` (as repeng
/// writes it) -> ours: `direction.N` lands on layer N.
#[test]
fn gguf_control_vectors_round_trip_through_the_python_gguf_package() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.gguf");
    let meta = BTreeMap::from([("model_hint".to_owned(), "llama".to_owned())]);
    let written = save(&ours, &directions(4, 8), &meta).unwrap();
    assert_eq!(
        written,
        vec![1, 2, 3],
        "layer 0 cannot be a llama.cpp control vector"
    );
    let json: serde_json::Value =
        serde_json::from_str(&python(&["read-gguf", ours.to_str().unwrap()])).unwrap();
    assert_eq!(json["arch"], "controlvector");
    assert_eq!(json["model_hint"], "llama");
    assert_eq!(json["layer_count"], 3);
    for l in 1..4 {
        let got: Vec<f32> = json["directions"][format!("direction.{l}")]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let want: Vec<f32> = (0..8).map(|i| l as f32 + i as f32 / 1000.0).collect();
        assert_eq!(got, want, "direction.{l}");
    }
    // And we read back what we wrote.
    let back = SteeringVector::load(&ours, 8, &Device::Cpu).unwrap();
    assert_eq!(back.layers(), vec![1, 2, 3]);
    assert_eq!(back.metadata["model_hint"], "llama");

    let repeng = dir.path().join("repeng.gguf");
    python(&["write-repeng", repeng.to_str().unwrap(), "5", "8"]);
    let v = SteeringVector::load(&repeng, 8, &Device::Cpu).unwrap();
    assert_eq!(v.layers(), vec![1, 2, 3, 4, 5]);
    for l in 1..=5 {
        let got = v.for_layer(l).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got[0], l as f32);
        assert!((got[7] - (l as f32 + 0.007)).abs() < 1e-6);
    }
    assert!(
        v.for_layer(0).is_err(),
        "no direction.0 in a control vector"
    );
}

#[test]
fn pt_and_npy_tensors_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("direction.pt");
    python(&["write-pt", pt.to_str().unwrap(), "6"]);
    let v = SteeringVector::load(&pt, 6, &Device::Cpu).unwrap();
    let got = v.for_layer(3).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got, vec![7.0, 7.001, 7.002, 7.003, 7.004, 7.005]);
    assert!(matches!(
        SteeringVector::load(&pt, 7, &Device::Cpu),
        Err(Error::WidthMismatch {
            found: 6,
            expected: 7,
            ..
        })
    ));

    let npy = dir.path().join("dirs.npy");
    Tensor::arange(0f32, 12.0, &Device::Cpu)
        .unwrap()
        .reshape((3, 4))
        .unwrap()
        .write_npy(&npy)
        .unwrap();
    let v = SteeringVector::load(&npy, 4, &Device::Cpu).unwrap();
    assert_eq!(v.layers(), vec![0, 1, 2]);
    assert_eq!(
        v.for_layer(2).unwrap().to_vec1::<f32>().unwrap(),
        vec![8.0, 9.0, 10.0, 11.0]
    );
    let nan = dir.path().join("nan.npy");
    Tensor::new(&[1f32, f32::NAN, 0.0, 0.0], &Device::Cpu)
        .unwrap()
        .write_npy(&nan)
        .unwrap();
    let err = SteeringVector::load(&nan, 4, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nan.npy") && err.contains("NaN"), "{err}");
}

/// Bad control vectors: wrong architecture key, `direction.0`, a layer count the tensors do not
/// match (missing layers), wrong width, and a requested layer the file lacks.
#[test]
fn bad_gguf_control_vectors_are_refused_with_the_reason() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, arch: &str, count: u32, layers: &[usize], width: usize| {
        let path = dir.path().join(name);
        let arch = gguf_file::Value::String(arch.to_owned());
        let count = gguf_file::Value::U32(count);
        let md: Vec<(&str, &gguf_file::Value)> = vec![
            ("general.architecture", &arch),
            ("controlvector.layer_count", &count),
        ];
        let ts: Vec<(String, QTensor)> = layers
            .iter()
            .map(|l| {
                let t = Tensor::ones(width, candle_core::DType::F32, &Device::Cpu).unwrap();
                (
                    format!("direction.{l}"),
                    QTensor::quantize(&t, GgmlDType::F32).unwrap(),
                )
            })
            .collect();
        let refs: Vec<(&str, &QTensor)> = ts.iter().map(|(n, q)| (n.as_str(), q)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &md, &refs).unwrap();
        path
    };
    let cases = [
        (write("arch.gguf", "llama", 1, &[1], 8), "controlvector"),
        (
            write("zero.gguf", "controlvector", 2, &[0, 1], 8),
            "direction.0",
        ),
        (
            write("count.gguf", "controlvector", 3, &[1, 2], 8),
            "missing layers",
        ),
    ];
    for (path, needle) in &cases {
        let err = SteeringVector::load(path, 8, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(needle) && err.contains(path.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
    let wide = write("wide.gguf", "controlvector", 1, &[1], 9);
    assert!(matches!(
        SteeringVector::load(&wide, 8, &Device::Cpu),
        Err(Error::WidthMismatch { .. })
    ));
    let ok = write("ok.gguf", "controlvector", 2, &[1, 2], 8);
    let err = SteeringVector::load(&ok, 8, &Device::Cpu)
        .unwrap()
        .for_layer(5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 5") && err.contains("[1, 2]"), "{err}");
}

/// The `vector` command stores its provenance inside the safetensors file (metadata) and in
/// the sidecar, and writes control vectors with `--out X.gguf`.
#[test]
fn vector_command_records_metadata_and_writes_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = root.join("assets/demo-model/prompts");
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "vector",
            "--positive",
            p.join("harmful_test.json")
                .to_str()
                .unwrap()
                .to_owned()
                .leak(),
            "--negative",
            p.join("harmless_test.json")
                .to_str()
                .unwrap()
                .to_owned()
                .leak(),
            "--out",
            out.to_str().unwrap().to_owned().leak(),
        ];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_steerscope"))
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let st = dir.path().join("v.safetensors");
    run(
        &st,
        &["--positions", "post-instruction", "--method", "pca-diff"],
    );
    let v = SteeringVector::load(&st, 96, &Device::Cpu).unwrap();
    assert_eq!(v.layers().len(), 6);
    assert_eq!(v.metadata["positions"], "post-instruction");
    assert_eq!(v.metadata["method"], "pca-diff");
    assert_eq!(v.metadata["hidden_size"], "96");
    assert_eq!(v.metadata["positive_sha256"].len(), 64);
    let gg = dir.path().join("v.gguf");
    run(&gg, &[]);
    let json: serde_json::Value =
        serde_json::from_str(&python(&["read-gguf", gg.to_str().unwrap()])).unwrap();
    assert_eq!(json["layer_count"], 5);
    assert_eq!(json["model_hint"], "llama");
}
