//! `ssr train --device cuda` against `--device cpu`: three steps on the tiny model and
//! four trajectories; every step's loss and gradient norm agree within the trainer's
//! stated tolerance for the device's default precision (bf16: `GpuPrecision::tolerance`).
//!
//! The trajectories carry their advantages, all positive: the stated loss tolerance is
//! relative (the loss is Σ w·ratio·A, whose relative error is the log-probs' absolute
//! error), which holds when the terms share a sign. With GRPO's advantages (+A and −A
//! in each group) the loss cancels to near 0 and bf16's log-prob error of ~1e-2 per
//! token shows as a 7% relative difference of a 0.018 loss (1.3e-3 absolute, the
//! expected random walk over 32 tokens): seen on the emulated device, not a GPU bug.

use super::{on_device_or_skip, ssr, succeeded};
use serde_json::Value;
use ssr_trainer::gguf::GgufFile;
use ssr_trainer::gpu::GpuPrecision;
use ssr_trainer::testing::assert_close;
use ssr_trainer::tokenizer::Tokenizer;
use ssr_trainer::trajectory::{Role, Trajectory, write_trajectories};

/// A trajectory of `text`'s tokens whose second half is scored, with behaviour
/// log-probs the tiny model's own (CPU, temperature 1): the first step's ratio is 1.
fn trajectory(
    tok: &Tokenizer,
    w: &ssr_trainer::Weights,
    group: &str,
    text: &str,
    advantage: f32,
) -> Trajectory {
    let token_ids = tok.encode(text);
    let n = token_ids.len();
    assert!(n >= 8, "{text:?} is {n} tokens");
    let positions: Vec<usize> = (n / 2..n).collect();
    let (lp, _) = ssr_trainer::train::next_token_logprobs(w, &token_ids, &positions, 1.0);
    let mut logprobs = vec![0.0; n];
    let mut loss_mask = vec![0; n];
    for (&p, l) in positions.iter().zip(lp) {
        logprobs[p] = l;
        loss_mask[p] = 1;
    }
    Trajectory {
        role: Role::Solver,
        group_id: group.into(),
        token_ids,
        loss_mask,
        logprobs,
        reward: advantage,
        advantage: Some(advantage),
        temperature: Some(1.0),
        top_p: None,
        metadata: serde_json::json!({}),
    }
}

/// The step objects (`{"step", "loss", "grad_norm", ...}`) and the summary's device.
fn steps(stdout: &str) -> (Vec<Value>, Value) {
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (summary, steps) = lines.split_last().expect("a summary line");
    (steps.to_vec(), summary["device"].clone())
}

#[test]
fn ssr_train_on_cuda_matches_cpu_step_by_step() {
    let test = "ssr_train_on_cuda_matches_cpu_step_by_step";
    let Some(d) = on_device_or_skip(test) else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&d.model).unwrap()).unwrap();
    let w = &d.weights;
    let file = d.dir().join("t.jsonl");
    write_trajectories(
        &file,
        &[
            trajectory(
                &tok,
                w,
                "a",
                "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
                1.0,
            ),
            trajectory(
                &tok,
                w,
                "a",
                "def add(a, b):\n    return a - b  # wrong\n\nprint(add(2, 3))",
                0.5,
            ),
            trajectory(
                &tok,
                w,
                "b",
                "The tests pass after the fix to the parser's loop bound.",
                0.8,
            ),
            trajectory(
                &tok,
                w,
                "b",
                "I could not find the bug; submitting an empty patch now.",
                0.3,
            ),
        ],
    )
    .unwrap();
    let run = |device: &str| {
        let out = d.dir().join(format!("out-{device}"));
        let o = ssr(&[
            "train",
            "--trajectories",
            file.to_str().unwrap(),
            "--model",
            d.model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "3",
            // Steps that move the ratios by a few percent: steps 2 and 3 see new weights,
            // and no token reaches the clip range. A clipped token's gradient is 0, so a
            // token at the boundary flips the gradient norm on bf16 noise: at 1e-4, step
            // 3's norm was 1.50 on the CPU and 2.46 on the device (the losses agreed);
            // at 1e-3 every token of step 2 was clipped.
            "--lr",
            "1e-5",
            "--warmup",
            "0",
            "--device",
            device,
            "--json",
        ]);
        steps(&succeeded(&format!("ssr train --device {device}"), &o))
    };
    let (cpu, cpu_device) = run("cpu");
    let (cuda, cuda_device) = run("cuda");
    assert_eq!(cpu_device["kind"], "cpu", "{cpu_device}");
    assert_eq!(cuda_device["kind"], "cuda", "{cuda_device}");
    assert_eq!(cuda_device["name"], d.device_name.as_str(), "{cuda_device}");
    assert_eq!((cpu.len(), cuda.len()), (3, 3));
    let tol = GpuPrecision::default().tolerance();
    for (c, g) in cpu.iter().zip(&cuda) {
        let step = &c["step"];
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}")) as f32;
        eprintln!(
            "step {step}: loss cpu {} cuda {}, grad norm cpu {} cuda {} ({})",
            c["loss"], g["loss"], c["grad_norm"], g["grad_norm"], d.device_name
        );
        assert!(c.get("no_signal").is_none(), "every step has a signal: {c}");
        assert_eq!(c["clip_fraction"], 0.0, "no token clipped: {c}");
        assert_eq!(c["trained_tokens"], g["trained_tokens"]);
        assert_close(
            &format!("loss at step {step}"),
            &[f(g, "loss")],
            &[f(c, "loss")],
            tol.loss,
        );
        assert_close(
            &format!("grad norm at step {step}"),
            &[f(g, "grad_norm")],
            &[f(c, "grad_norm")],
            tol.grad_norm,
        );
    }
}
