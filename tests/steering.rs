//! Interventions and traces on the real SmolLM2 weights: each property the steering engine
//! promises, checked numerically.
#![allow(clippy::unwrap_used, clippy::float_cmp)] // exact equality is the property under test

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use candle_core::{Device, IndexOp, Tensor};
use common::max_abs_diff;
use steerscope::generate::{generate, GenerateRequest, Sampling, StopReason, StreamSpec};
use steerscope::hooks::{
    BlockHook, Component, ComponentAblation, HookPoint, Scope, Steering, TraceSpec,
};
use steerscope::model::{ForwardArgs, ForwardOutput, KvCache, Model};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load_gguf(&common::smollm2(), &Device::Cpu).unwrap())
}

fn direction(seed: u64) -> Tensor {
    let h = model().cfg().hidden_size;
    common::Rng::new(seed).tensor(&[h], 1.0, 0.0)
}

fn prompt() -> Vec<u32> {
    model()
        .encode_chat("Write a story about a chef cooking pasta")
        .unwrap()
}

fn run(ids: &[u32], steering: &[Steering], trace: Option<&TraceSpec>) -> ForwardOutput {
    let tf = &model().transformer;
    let input = common::ids_tensor(ids);
    tf.forward(
        &input,
        &mut KvCache::new(tf.cfg.n_layers),
        &ForwardArgs {
            steering,
            trace,
            prompt_len: ids.len(),
            all_logits: true,
            ..ForwardArgs::default()
        },
    )
    .unwrap()
}

#[test]
fn strength_zero_leaves_logits_bit_identical_and_nonzero_changes_them() {
    let ids = prompt();
    let base = run(&ids, &[], None).logits;
    let zero = run(
        &ids,
        &[Steering::add(10, direction(1), 0.0, Scope::All)],
        None,
    )
    .logits;
    let base_v: Vec<f32> = base.flatten_all().unwrap().to_vec1().unwrap();
    let zero_v: Vec<f32> = zero.flatten_all().unwrap().to_vec1().unwrap();
    assert!(
        base_v
            .iter()
            .zip(&zero_v)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "strength 0 changed logits"
    );
    let some = run(
        &ids,
        &[Steering::add(10, direction(1), 2.0, Scope::All)],
        None,
    )
    .logits;
    assert!(
        max_abs_diff(&base, &some) > 1e-2,
        "strength 2 did not change logits"
    );
}

#[test]
fn addition_changes_resid_post_of_its_layer_by_exactly_strength_times_v() {
    let ids = prompt();
    let layer_idx = 12;
    let strength = 3.5;
    let v = direction(2);
    let post = HookPoint::block(layer_idx, BlockHook::ResidPost);
    let pre = HookPoint::block(layer_idx, BlockHook::ResidPre);
    let spec = TraceSpec {
        capture: vec![pre, post],
        ..TraceSpec::default()
    };
    let base = run(&ids, &[], Some(&spec));
    let steered = run(
        &ids,
        &[Steering::add(layer_idx, v.clone(), strength, Scope::All)],
        Some(&spec),
    );
    // Upstream of the addition nothing moves.
    assert_eq!(
        max_abs_diff(&base.captures[&pre], &steered.captures[&pre]),
        0.0
    );
    // The forward adds `strength * v` (computed as f32) to the block output; doing the same
    // addition to the unsteered capture must give the steered capture bit for bit.
    let sv = (v * strength).unwrap().reshape((1, 1, ())).unwrap();
    let expected = base.captures[&post].broadcast_add(&sv).unwrap();
    assert_eq!(max_abs_diff(&steered.captures[&post], &expected), 0.0);
    // And the change itself is strength*v up to f32 rounding of the residual's magnitude.
    let delta = (&steered.captures[&post] - &base.captures[&post]).unwrap();
    let scale = common::max_abs(&base.captures[&post]);
    let err = max_abs_diff(&delta, &sv.broadcast_as(delta.shape()).unwrap());
    assert!(
        err <= 1e-6 * scale,
        "resid_post delta differs from strength*v by {err} (residual scale {scale})"
    );
}

#[test]
fn ablation_removes_the_direction_at_every_hook_point() {
    let ids = prompt();
    let d = direction(3);
    let spec = TraceSpec {
        directions: vec![d.clone()],
        summaries: true,
        capture: vec![],
    };
    let base = run(&ids, &[], Some(&spec)).trace.unwrap();
    let ablated = Steering::ablate(d);
    let tr = run(&ids, &[ablated], Some(&spec)).trace.unwrap();
    let n_layers = model().cfg().n_layers;
    let mut worst_base = 0f32;
    for l in 0..n_layers {
        for hook in BlockHook::ALL {
            for t in 0..tr.n_tokens {
                let p = tr.projection(hook, l, 0, t, 0).abs();
                let scale = tr.norm(hook, l, 0, t).max(1.0);
                assert!(
                    p <= 1e-4 * scale,
                    "layer {l} {hook:?} token {t}: projection {p} after ablation"
                );
                worst_base = worst_base.max(base.projection(hook, l, 0, t, 0).abs());
            }
        }
    }
    assert!(
        worst_base > 0.5,
        "the direction was never present ({worst_base}); the test proves nothing"
    );
}

#[test]
fn attention_and_mlp_contributions_sum_with_the_embedding_to_the_residual_projection() {
    let ids = prompt();
    let spec = TraceSpec {
        directions: vec![direction(4), direction(5)],
        summaries: true,
        capture: vec![],
    };
    let tr = run(&ids, &[], Some(&spec)).trace.unwrap();
    for dir in 0..2 {
        for t in 0..tr.n_tokens {
            let mut sum = tr.embed_projection(0, t, dir);
            for l in 0..tr.n_layers {
                let pre = tr.projection(BlockHook::ResidPre, l, 0, t, dir);
                assert!(
                    (pre - sum).abs() <= 1e-3 * (1.0 + pre.abs()),
                    "resid_pre {l} {t}"
                );
                sum += tr.projection(BlockHook::AttnOut, l, 0, t, dir);
                let mid = tr.projection(BlockHook::ResidMid, l, 0, t, dir);
                assert!(
                    (mid - sum).abs() <= 1e-3 * (1.0 + mid.abs()),
                    "resid_mid {l} {t}"
                );
                sum += tr.projection(BlockHook::MlpOut, l, 0, t, dir);
                let post = tr.projection(BlockHook::ResidPost, l, 0, t, dir);
                assert!(
                    (post - sum).abs() <= 1e-3 * (1.0 + post.abs()),
                    "layer {l} token {t}: {post} vs {sum}"
                );
            }
        }
    }
}

#[test]
fn component_ablation_zeroes_or_replaces_one_sublayer_output() {
    let ids = prompt();
    let h = model().cfg().hidden_size;
    let attn = HookPoint::block(5, BlockHook::AttnOut);
    let mlp = HookPoint::block(7, BlockHook::MlpOut);
    let spec = TraceSpec {
        capture: vec![attn, mlp],
        ..TraceSpec::default()
    };
    let mean = direction(6);
    let s = Steering {
        component_ablations: vec![
            ComponentAblation {
                layer_idx: 5,
                component: Component::Attn,
                mean: None,
            },
            ComponentAblation {
                layer_idx: 7,
                component: Component::Mlp,
                mean: Some(mean.clone()),
            },
        ],
        ..Steering::default()
    };
    let out = run(&ids, &[s], Some(&spec));
    let a = common::max_abs(&out.captures[&attn]);
    assert_eq!(a, 0.0);
    let m = &out.captures[&mlp];
    let expected = mean
        .reshape((1, 1, h))
        .unwrap()
        .broadcast_as(m.shape())
        .unwrap();
    assert_eq!(max_abs_diff(m, &expected), 0.0);
}

fn gen(
    streams: Vec<StreamSpec>,
    sampling: Sampling,
    max_new_tokens: usize,
) -> steerscope::generate::GenerateOutput {
    let req = GenerateRequest {
        prompt_ids: prompt(),
        streams,
        max_new_tokens,
        sampling,
        trace: None,
    };
    generate(model(), &req, &AtomicBool::new(false), &mut |_| {}).unwrap()
}

fn streams() -> Vec<StreamSpec> {
    vec![
        StreamSpec {
            label: "unsteered".into(),
            steering: Steering::default(),
            seed: 1,
        },
        StreamSpec {
            label: "steered".into(),
            steering: Steering::add(8, direction(7), 8.0, Scope::All),
            seed: 2,
        },
        StreamSpec {
            label: "ablated".into(),
            steering: Steering::ablate(direction(7)),
            seed: 3,
        },
    ]
}

#[test]
fn batched_side_by_side_equals_separate_single_stream_runs() {
    for sampling in [
        Sampling::default(),
        Sampling {
            temperature: 0.8,
            top_p: Some(0.95),
        },
    ] {
        let batched = gen(streams(), sampling, 24);
        for (i, spec) in streams().into_iter().enumerate() {
            let single = gen(vec![spec], sampling, 24);
            assert_eq!(
                batched.streams[i].token_ids, single.streams[0].token_ids,
                "stream {i} ({}) differs under {sampling:?}",
                batched.streams[i].label
            );
        }
        assert_ne!(
            batched.streams[0].token_ids, batched.streams[1].token_ids,
            "steering changed nothing"
        );
    }
}

#[test]
fn scope_selects_prompt_or_generated_positions() {
    let v = direction(8);
    let ids = prompt();
    let base = run(&ids, &[], None).logits;
    let gen_only = run(
        &ids,
        &[Steering::add(8, v.clone(), 8.0, Scope::Generated)],
        None,
    )
    .logits;
    assert_eq!(
        max_abs_diff(&base, &gen_only),
        0.0,
        "generated-only steering touched the prompt"
    );
    let prompt_only = run(
        &ids,
        &[Steering::add(8, v.clone(), 8.0, Scope::Prompt)],
        None,
    )
    .logits;
    assert!(max_abs_diff(&base, &prompt_only) > 1e-2);
    // Generated-only steering does change what is generated.
    let unsteered = gen(vec![StreamSpec::default()], Sampling::default(), 16);
    let steered = gen(
        vec![StreamSpec {
            steering: Steering::add(8, v, 8.0, Scope::Generated),
            ..StreamSpec::default()
        }],
        Sampling::default(),
        16,
    );
    assert_eq!(
        unsteered.streams[0].token_ids[0], steered.streams[0].token_ids[0],
        "first token comes from the prompt"
    );
    assert_ne!(unsteered.streams[0].token_ids, steered.streams[0].token_ids);
}

#[test]
fn generation_streams_text_and_stops_on_cancel() {
    let req = GenerateRequest {
        prompt_ids: prompt(),
        streams: streams(),
        max_new_tokens: 12,
        sampling: Sampling::default(),
        trace: Some(TraceSpec {
            directions: vec![direction(9)],
            summaries: true,
            capture: vec![],
        }),
    };
    let mut texts = vec![String::new(); 3];
    let out = generate(model(), &req, &AtomicBool::new(false), &mut |ev| {
        texts[ev.stream_idx].push_str(ev.text);
    })
    .unwrap();
    for (i, s) in out.streams.iter().enumerate() {
        assert_eq!(
            texts[i], s.text,
            "streamed text of stream {i} differs from the final text"
        );
        assert!(!s.text.trim().is_empty());
    }
    let tr = out.trace.unwrap();
    assert_eq!(tr.batch, 3);
    assert_eq!(tr.n_tokens, out.prompt_len + out.decode_steps);

    let cancel = AtomicBool::new(true);
    let out = generate(model(), &req, &cancel, &mut |_| {}).unwrap();
    assert!(out
        .streams
        .iter()
        .all(|s| s.stop == StopReason::Cancelled && s.token_ids.len() == 1));
}

#[test]
fn kv_cache_steps_under_steering_match_a_full_recompute_on_dense_weights() {
    // Dense f32 weights: no activation quantization, so any difference is a cache bug.
    let dir = tempfile::tempdir().unwrap();
    let folder = common::write_tiny_hf(dir.path(), &common::Tiny::default(), 21);
    let m = Model::load(folder.to_str().unwrap(), &Device::Cpu).unwrap();
    let tf = &m.transformer;
    let h = tf.cfg.hidden_size;
    let ids: Vec<u32> = (0..20).map(|i| (i * 13 % 300) as u32).collect();
    let v = common::Rng::new(5).tensor(&[h], 1.0, 0.0);
    for scope in [Scope::All, Scope::Prompt, Scope::Generated] {
        let s = [Steering {
            ablate_direction: Some(common::Rng::new(6).tensor(&[h], 1.0, 0.0)),
            ..Steering::add(1, v.clone(), 3.0, scope)
        }];
        // Positions >= 15 count as generated.
        let prompt_len = 15;
        let full_args = ForwardArgs {
            steering: &s,
            trace: None,
            prompt_len,
            all_logits: true,
            ..ForwardArgs::default()
        };
        let input = common::ids_tensor(ids.as_slice());
        let full = tf
            .forward(&input, &mut KvCache::new(tf.cfg.n_layers), &full_args)
            .unwrap()
            .logits;
        let mut cache = KvCache::new(tf.cfg.n_layers);
        let args = ForwardArgs {
            all_logits: false,
            ..full_args
        };
        let first = common::ids_tensor(&ids[..prompt_len]);
        tf.forward(&first, &mut cache, &args).unwrap();
        for (pos, &tok) in ids.iter().enumerate().skip(prompt_len) {
            let input = common::ids_tensor(&[tok]);
            let step = tf
                .forward(&input, &mut cache, &args)
                .unwrap()
                .logits
                .i(0)
                .unwrap();
            let diff = max_abs_diff(&full.i((0, pos)).unwrap(), &step);
            assert!(
                diff < 1e-4,
                "{scope:?} position {pos}: cached vs recomputed logits differ by {diff}"
            );
        }
    }
}
