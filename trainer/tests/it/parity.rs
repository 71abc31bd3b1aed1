//! Parity with an independent Python reference (`tests/reference/smollm_reference.py`:
//! the `gguf` package's reader and dequantizer, HF `tokenizers` for ids, a numpy float64
//! llama forward). Skips, saying why, when python3, its packages or the model are absent.
//!
//! Tolerance on logits: the reference computes in float64 from the same dequantized
//! weights, so the only differences are the engine's f32 rounding (GEMM sums of up to
//! 1536 terms, 30 residual layers, softmax). Measured on SmolLM2-135M on the 2-core dev
//! machine: the largest absolute logit difference is 8.0e-5 with logits up to ~36 (the
//! test prints the figure). The bound 1e-3 leaves a 12x margin for other CPUs' GEMM
//! blocking and is far below what a wrong operation (a transposed matrix, a RoPE pair
//! off by one, a mask leak) produces (>0.1).

use ssr_trainer::infer::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEXTS: &[&str] = &[
    "Hello world",
    "def f(x):\n    return x**2  # 12345\n\n\n",
    "café naïve 日本語 😀 Ünïcödé — “quotes” ½ ٣",
    "  leading and trailing   \t\t\n  ",
    "a\tb\r\nc  \n\n  d",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "x = 3.14159e-10; y=[1,22,333]; it's they'll we've I'M",
    "fn main() {\n    let v: Vec<u8> = vec![0xff; 10];\n    println!(\"{:?}\", v);\n}\n",
    "    \n\n\n    indented\n        more",
];

const PROMPTS: &[&str] = &[
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    ",
];

const LOGIT_TOLERANCE: f32 = 1e-3;

fn python_ready() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import numpy, gguf, tokenizers"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 lacks numpy/gguf/tokenizers: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn tokenizer_and_logits_match_python_reference() {
    let Some(model) = crate::model_files::smollm2("tokenizer_and_logits_match_python_reference")
    else {
        return;
    };
    if let Err(why) = python_ready() {
        eprintln!("SKIP tokenizer_and_logits_match_python_reference: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({ "texts": TEXTS, "prompts": PROMPTS }).to_string(),
    )
    .unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/smollm_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([
            "--model".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            dir.path().as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("result.json")).unwrap()).unwrap();

    let engine = Engine::load(&model).unwrap();
    let t = engine.tokenizer();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    for (text, want) in TEXTS.iter().zip(result["text_ids"].as_array().unwrap()) {
        assert_eq!(t.encode(text), ids(want), "token ids of {text:?}");
    }
    let vocab = result["vocab"].as_u64().unwrap() as usize;
    for (i, (prompt, want)) in PROMPTS
        .iter()
        .zip(result["prompt_ids"].as_array().unwrap())
        .enumerate()
    {
        let prompt_ids = t.encode(prompt);
        assert_eq!(prompt_ids, ids(want), "prompt ids of {prompt:?}");
        let reference = read_f32(&dir.path().join(result["logits_files"][i].as_str().unwrap()));
        let got = engine.logits(&prompt_ids).unwrap();
        assert_eq!(got.len(), reference.len());
        let worst = got
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = reference.iter().fold(0.0f32, |a, b| a.max(b.abs()));
        eprintln!(
            "prompt {i}: max |logit - reference| = {worst:.2e} (logits up to {scale:.1}, {} positions)",
            prompt_ids.len()
        );
        assert!(
            worst <= LOGIT_TOLERANCE,
            "prompt {i}: logits differ by {worst}"
        );
        for (pos, (g, r)) in got.chunks(vocab).zip(reference.chunks(vocab)).enumerate() {
            // The argmax must agree unless the reference's top two are within tolerance.
            let mut sorted = r.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let am = |x: &[f32]| {
                x.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0
            };
            if sorted[0] - sorted[1] > 2.0 * LOGIT_TOLERANCE {
                assert_eq!(am(g), am(r), "prompt {i} position {pos}: argmax differs");
            }
        }
    }
}

fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
