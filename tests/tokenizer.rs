//! The tokenizer built from SmolLM2's GGUF metadata against llama.cpp's own tokenization of the
//! same file (fixture made by scripts/make-tokenizer-fixture.py).
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::Device;
use steerscope::model::Model;

#[test]
fn gguf_tokenizer_matches_llama_cpp_reference_ids() {
    let model = Model::load_gguf(&common::smollm2(), &Device::Cpu).unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/smollm2_tokens.json")).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    let mut failures = vec![];
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = model.encode(text).unwrap();
        if got != want {
            failures.push(format!(
                "{text:?}:\n  ours      {got:?}\n  llama.cpp {want:?}"
            ));
        }
        // Decoding (specials kept) gives the text back.
        let back = model.tokenizer.decode(&got, false).unwrap();
        assert_eq!(back, text, "round trip of {text:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn chat_template_from_gguf_renders_chatml_and_special_tokens_encode_as_one_id() {
    let model = Model::load_gguf(&common::smollm2(), &Device::Cpu).unwrap();
    let text = model.render_chat("Write a poem about cats").unwrap();
    assert!(text.starts_with("<|im_start|>system\n"), "{text}");
    assert!(
        text.ends_with(
            "<|im_start|>user\nWrite a poem about cats<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{text}"
    );
    let ids = model.encode_chat("Write a poem about cats").unwrap();
    let im_start = model.tokenizer.token_to_id("<|im_start|>").unwrap();
    let im_end = model.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == im_start).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == im_end).count(), 2);
    assert!(
        model.stop_ids.contains(&im_end),
        "end of turn must stop generation"
    );
}
