//! A `tokenizers::Tokenizer` built from GGUF metadata (`tokenizer.ggml.*`), for gpt2-style
//! byte-level BPE vocabularies, with the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, Result};

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama-3's pre-tokenizer regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn strings(path: &Path, content: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let bad = || {
        Error::bad_file(
            path,
            format!("GGUF metadata `{key}` is missing or not an array of strings"),
        )
    };
    let Some(Value::Array(items)) = content.metadata.get(key) else {
        return Err(bad());
    };
    items
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| bad()))
        .collect()
}

fn token_types(content: &gguf_file::Content) -> Vec<i32> {
    match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(items)) => items.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
        _ => vec![],
    }
}

/// Build the tokenizer a GGUF file describes.
pub(crate) fn from_gguf(path: &Path, content: &gguf_file::Content) -> Result<Tokenizer> {
    let md = &content.metadata;
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(Error::bad_file(
            path,
            format!("GGUF tokenizer model `{model}` is not supported (expected gpt2, a byte-level BPE); convert the model with its tokenizer.json instead"),
        ));
    }
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "default".into());
    let tokens = strings(path, content, "tokenizer.ggml.tokens")?;
    let merges = strings(path, content, "tokenizer.ggml.merges")?;
    let types = token_types(content);

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, tok)| (tok.clone(), id as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| {
                    Error::bad_file(
                        path,
                        format!("GGUF merge `{m}` is not two tokens separated by a space"),
                    )
                })
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::bad_file(path, format!("GGUF BPE vocabulary: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| Error::Tokenizer(e.to_string()))?
        .into())
    };
    let byte_level_no_regex: PreTokenizerWrapper = ByteLevel::new(false, true, false).into();
    let pre_tokenizer: PreTokenizerWrapper = match pre.as_str() {
        "smollm" => Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into(),
        "llama-bpe" | "llama3" | "smaug-bpe" => Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level_no_regex]).into(),
        "qwen2" => Sequence::new(vec![split(QWEN2_REGEX)?, byte_level_no_regex]).into(),
        "default" | "gpt-2" | "gpt2" => ByteLevel::new(false, true, true).into(),
        other => {
            return Err(Error::bad_file(
                path,
                format!("GGUF pre-tokenizer `{other}` is not supported (expected smollm, llama-bpe, qwen2 or default)"),
            ))
        }
    };
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens match whole and are special; user-defined ones match whole and are not.
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (tok, &t) in tokens.iter().zip(&types) {
        match t {
            TOKEN_TYPE_CONTROL => special.push(AddedToken::from(tok.clone(), true)),
            TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(tok.clone(), false)),
            _ => {}
        }
    }
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}
