//! The model worker on its own, on the real demo model: a new generation cancels the running
//! one mid-stream, and events arrive in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steerscope::generate::Sampling;
use steerscope::hooks::Scope;
use steerscope::worker::{Command, Event, GenerateParams, Mode, WorkerHandle};

fn next(w: &mut WorkerHandle) -> Event {
    let start = Instant::now();
    loop {
        if let Some(ev) = w.try_recv() {
            return ev;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no event");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_for(w: &mut WorkerHandle, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    loop {
        let ev = next(w);
        if let Event::Failed { message, .. } = &ev {
            panic!("waiting for {what}: {message}");
        }
        if pred(&ev) {
            return ev;
        }
    }
}

#[test]
fn a_new_generation_cancels_the_running_one() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut w = WorkerHandle::spawn(Arc::new(|| {}));
    w.send(Command::LoadModel {
        spec: root.join("assets/demo-model").display().to_string(),
        device: "cpu".into(),
    })
    .unwrap();
    wait_for(&mut w, "the model", |e| matches!(e, Event::ModelLoaded(_)));
    w.send(Command::LoadVector {
        path: root.join("vectors/demo-model.refusal.safetensors"),
    })
    .unwrap();
    wait_for(&mut w, "the vector", |e| {
        matches!(e, Event::VectorLoaded(_))
    });

    // Strength 8 at every position breaks the small model into repetition that never stops,
    // so this request runs to its 200-token limit unless cancelled.
    let long = GenerateParams {
        prompt: "Write a poem about cats".into(),
        chat: true,
        layer_idx: 3,
        strength: 8.0,
        mode: Mode::Add,
        scope: Scope::All,
        sampling: Sampling {
            temperature: 0.0,
            top_p: None,
        },
        seed: 0,
        max_new_tokens: 200,
    };
    let a = w.generate(long.clone()).unwrap();
    wait_for(
        &mut w,
        "a token of the first request",
        |e| matches!(e, Event::Token { job, .. } if *job == a),
    );
    let b = w
        .generate(GenerateParams {
            strength: 1.0,
            scope: Scope::Prompt,
            max_new_tokens: 8,
            ..long
        })
        .unwrap();
    // The first request ends cancelled, before any token of the second; it never finishes.
    let mut a_tokens_after = 0;
    loop {
        match next(&mut w) {
            Event::Token { job, .. } if job == a => a_tokens_after += 1,
            Event::Token { job, .. } if job == b => panic!("a token of b before a was cancelled"),
            Event::Generated { job, .. } if job == a => panic!("the cancelled request finished"),
            Event::Cancelled { job } if job == a => break,
            Event::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert!(
        a_tokens_after < 190,
        "{a_tokens_after} tokens after the cancel"
    );
    let Event::Generated { job, generation } = wait_for(&mut w, "the second request", |e| {
        matches!(e, Event::Generated { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(job, b);
    assert_eq!(generation.params.strength, 1.0);
    assert_eq!(generation.streams.len(), 2);
    assert!(generation.streams.iter().all(|s| s.tokens.len() <= 8));
}

#[test]
fn a_panic_is_reported_and_a_restarted_worker_works() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut w = WorkerHandle::spawn(Arc::new(|| {}));
    w.send(Command::Panic).unwrap();
    let Event::Panicked { message } = next(&mut w) else {
        panic!("expected Panicked")
    };
    assert!(message.contains("panic requested"), "{message}");
    // The stopped worker takes no more commands until restarted.
    std::thread::sleep(Duration::from_millis(50));
    assert!(w.send(Command::Panic).is_err());
    w.restart();
    w.send(Command::LoadModel {
        spec: root.join("assets/demo-model").display().to_string(),
        device: "cpu".into(),
    })
    .unwrap();
    wait_for(&mut w, "the model", |e| matches!(e, Event::ModelLoaded(_)));
    assert_eq!(w.restarts(), 1);
}
