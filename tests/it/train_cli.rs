//! `ssr train` and `ssr sft` as a user runs them, on a tiny random model saved as a
//! checkpoint: the zero-signal step is reported as such, a temperature that conflicts
//! with the trajectories is refused, `--keep-checkpoints` bounds the directory, and
//! `ssr sft` lowers the masked loss of a demonstration.

use crate::ssr_output;
use ssr_trainer::train::Demo;
use ssr_trainer::trajectory::{Role, Trajectory, write_trajectories};
use ssr_trainer::{Config, Weights, checkpoint};
use std::collections::BTreeMap;
use std::path::Path;

/// A tiny model with deterministic pseudo-random weights, saved weights-only.
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let mut w = Weights::zeros(&Config::tiny());
    let mut s = 99u64;
    w.for_each_mut(|name, t| {
        for x in t.iter_mut() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            *x = if name.contains("norm") { 1.0 } else { 0.3 * u };
        }
    });
    let path = dir.join("model");
    checkpoint::save(&path, &w, None, 0, &BTreeMap::new()).unwrap();
    path
}

fn trajectory(group: &str, reward: f32, temperature: Option<f32>) -> Trajectory {
    Trajectory {
        role: Role::Solver,
        group_id: group.into(),
        token_ids: vec![1, 2, 3, 4, 5, 6],
        loss_mask: vec![0, 0, 0, 1, 1, 1],
        logprobs: vec![0.0, 0.0, 0.0, -4.0, -4.0, -4.0],
        reward,
        advantage: None,
        temperature,
        top_p: None,
        metadata: serde_json::json!({}),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Regression (issue 14): every reward -1 printed "loss 0.0000" as if it had trained.
#[test]
fn ssr_train_reports_a_step_without_learning_signal() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let file = dir.path().join("t.jsonl");
    write_trajectories(
        &file,
        &[
            trajectory("bug-1", -1.0, Some(0.7)),
            trajectory("bug-1", -1.0, Some(0.7)),
        ],
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = [
        "train",
        "--trajectories",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let o = ssr_output(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("no learning signal: every reward of the group was equal"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("loss"),
        "no loss line for a zero-signal step: {stdout}"
    );
    // The recorded temperature (0.7) against an explicit 1.0: refused, nothing trained.
    let mut conflicting = args.to_vec();
    conflicting.extend(["--temperature", "1.0"]);
    let o = ssr_output(&conflicting);
    assert!(!o.status.success());
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("sampled at temperature 0.7") && stderr.contains("given is 1"),
        "{stderr}"
    );
}

#[test]
fn ssr_train_keeps_the_newest_checkpoints_and_ssr_sft_lowers_the_demo_loss() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let file = dir.path().join("t.jsonl");
    write_trajectories(
        &file,
        &[trajectory("g", 1.0, None), trajectory("g", -1.0, None)],
    )
    .unwrap();
    let out = dir.path().join("runs");
    let o = ssr_output(&[
        "train",
        "--trajectories",
        file.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "4",
        "--save-every",
        "1",
        "--keep-checkpoints",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut kept: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, ["step-000003", "step-000004"]);

    let demos = dir.path().join("demos.jsonl");
    let demo = Demo {
        token_ids: vec![1, 9, 4, 22, 23, 24, 25, 26],
        loss_mask: vec![0, 0, 0, 1, 1, 1, 1, 1],
        metadata: None,
    };
    std::fs::write(&demos, serde_json::to_string(&demo).unwrap() + "\n").unwrap();
    let sft_out = dir.path().join("sft");
    let o = ssr_output(&[
        "sft",
        "--demos",
        demos.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        sft_out.to_str().unwrap(),
        "--steps",
        "10",
        "--lr",
        "1e-2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let losses = crate::step_losses(&o);
    assert_eq!(losses.len(), 10);
    assert!(losses[9] < 0.5 * losses[0], "{losses:?}");
    assert!(checkpoint::is_checkpoint(&sft_out));
}
