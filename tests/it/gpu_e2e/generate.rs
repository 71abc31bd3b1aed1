//! `ssr model generate --precision f32` on the CUDA device against the CPU: 32 greedy
//! tokens of a fixed prompt on the tiny model. Equal tokens pass. At the first position
//! where they differ the test prints the CPU's top-2 logit margin there, and passes only
//! when that margin is below what the f32 tolerance allows two logits to move apart
//! (each by `abs + rel·|logit|`, `GpuPrecision::F32.tolerance().logits`): a near-tie
//! that rounding may flip, not a wrong kernel.

use super::{on_device_or_skip, ssr, succeeded};
use serde_json::Value;
use ssr_trainer::cpu::matmul::matmul_nt;
use ssr_trainer::gguf::GgufFile;
use ssr_trainer::gpu::GpuPrecision;
use ssr_trainer::tokenizer::Tokenizer;

const PROMPT: &str = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n";
const TOKENS: usize = 32;

/// The generated ids and the device object of `ssr model generate --json`.
fn generate(model: &str, device: &str) -> (Vec<u32>, Value) {
    let n = TOKENS.to_string();
    let o = ssr(&[
        "model",
        "generate",
        "--model",
        model,
        "--prompt",
        PROMPT,
        "--max-tokens",
        &n,
        "--precision",
        "f32",
        "--temperature",
        "0",
        "--device",
        device,
        "--json",
    ]);
    let out: Value = serde_json::from_str(&succeeded(&format!("generate on {device}"), &o))
        .expect("one JSON object");
    let ids = out["token_ids"]
        .as_array()
        .expect("token_ids")
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    (ids, out["device"].clone())
}

/// The CPU's (f32 reference) two largest logits after `context`.
fn top2_logits(w: &ssr_trainer::Weights, context: &[u32]) -> [(u32, f32); 2] {
    let acts = ssr_trainer::train::forward(w, context);
    let (dim, vocab) = (w.config.dim, w.config.vocab_size);
    let last = &acts.hidden[(context.len() - 1) * dim..context.len() * dim];
    let mut logits = vec![0.0; vocab];
    matmul_nt(&mut logits, last, w.lm_head(), 1, dim, vocab, false);
    let mut ids: Vec<u32> = (0..vocab as u32).collect();
    ids.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
    [ids[0], ids[1]].map(|i| (i, logits[i as usize]))
}

#[test]
fn greedy_f32_generation_on_cuda_equals_the_cpu() {
    let test = "greedy_f32_generation_on_cuda_equals_the_cpu";
    let Some(d) = on_device_or_skip(test) else {
        return;
    };
    let model = d.model.to_str().unwrap();
    let (cpu, cpu_device) = generate(model, "cpu");
    let (cuda, cuda_device) = generate(model, "cuda");
    assert_eq!(cpu_device["kind"], "cpu", "{cpu_device}");
    assert_eq!(cuda_device["kind"], "cuda", "{cuda_device}");
    assert_eq!(
        cpu.len(),
        TOKENS,
        "the fixed prompt gives {TOKENS} tokens before any end"
    );
    let Some(i) = (0..TOKENS).find(|&i| cpu.get(i) != cuda.get(i)) else {
        eprintln!(
            "{test}: {TOKENS} greedy tokens equal on the CPU and {}",
            d.device_name
        );
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&d.model).unwrap()).unwrap();
    let mut context = tok.encode(PROMPT);
    context.extend_from_slice(&cpu[..i]);
    let [(a, la), (b, lb)] = top2_logits(&d.weights, &context);
    let tol = GpuPrecision::F32.tolerance().logits;
    let allowed = 2.0 * tol.abs + tol.rel * (la.abs() + lb.abs());
    let margin = la - lb;
    eprintln!(
        "{test}: first divergence at token {i}: cpu {} cuda {:?}; CPU top-2 logits {a}: {la}, {b}: {lb}, margin {margin:.3e} (f32 tolerance allows {allowed:.3e})",
        cpu[i],
        cuda.get(i)
    );
    assert!(
        margin < allowed,
        "greedy tokens diverge at {i} with a top-2 margin of {margin:.3e}, above the f32 tolerance's {allowed:.3e}: cpu {cpu:?}, cuda {cuda:?}"
    );
}
