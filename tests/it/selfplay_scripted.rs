//! End to end with the scripted policy: `ssr selfplay` on the bundled example
//! repository makes a valid bug, runs G = 2 solver attempts with mixed outcomes,
//! rewards them per SSR_SPEC.md section 7, and writes trajectories whose token ids and
//! loss masks reproduce the transcripts exactly (real tokenizer); a resumed run
//! redoes nothing.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> Option<PathBuf> {
    let p = root().join(".models/SmolLM2-135M-Instruct.Q4_1.gguf");
    p.exists().then_some(p)
}

fn bash(cmd: &str) -> Value {
    json!(format!("<tool: bash>\n{cmd}\n</tool>"))
}

/// The injector breaks `from_roman` (subtractive pairs), deletes the two tests that
/// expose it, and writes the five files; solver 0 fixes it, solver 1 makes an
/// irrelevant edit (its failed patch becomes a higher-order bug).
pub fn recorded_turns() -> Value {
    let parser = r#"import json, re, sys
results = {}
summary = False
for line in sys.stdin:
    line = line.rstrip("\n")
    if re.match(r"^=+ short test summary info =+$", line):
        summary = True
        continue
    m = re.match(r"^(PASSED|FAILED|ERROR) (\S+?)(?: - .*)?$", line) if summary else None
    if m:
        results[m.group(2)] = "passed" if m.group(1) == "PASSED" else "failed"
print(json.dumps(results))"#;
    let weaken = r#"python3 - <<'EOF'
p = "tests/test_roman.py"
chunks = open(p).read().rstrip("\n").split("\n\n\n")
keep = [c for c in chunks if not c.startswith(("def test_from_roman_subtractive", "def test_round_trip"))]
open(p, "w").write("\n\n\n".join(keep) + "\n")
EOF
git diff -- tests/test_roman.py > ssr_artifact/test_weaken.diff && cat ssr_artifact/test_weaken.diff"#;
    json!({
        "injector": [[
            "I will look at the history and the tests first.\n<tool: bash>\ngit log --oneline | head -5 && ls src/textkit tests\n</tool>",
            bash(&format!("mkdir -p ssr_artifact && printf '%s\\n' '#!/bin/bash' 'export PYTHONDONTWRITEBYTECODE=1' 'export PYTHONPATH=src' 'python3 -m pytest -rA --tb=short -p no:cacheprovider tests/test_roman.py' > ssr_artifact/test_script.sh && echo tests/test_roman.py > ssr_artifact/test_files.txt && cat > ssr_artifact/test_parser.py <<'EOF'\n{parser}\nEOF\nbash ssr_artifact/test_script.sh | python3 ssr_artifact/test_parser.py")),
            bash("python3 -c \"p='src/textkit/roman.py'; s=open(p).read(); open(p,'w').write(s.replace('total -= v', 'total += v', 1))\" && git diff -- src > ssr_artifact/bug_inject.diff && cat ssr_artifact/bug_inject.diff"),
            bash(weaken),
            "<tool: submit>\n</tool>",
        ]],
        "solver": [
            [
                bash("grep -n 'total' src/textkit/roman.py"),
                bash("python3 -c \"p='src/textkit/roman.py'; s=open(p).read(); open(p,'w').write(s.replace('total += v', 'total -= v', 1))\""),
                "<tool: submit>\n</tool>",
            ],
            [
                bash("echo '# reviewed' >> src/textkit/roman.py"),
                "<tool: submit>\n</tool>",
            ],
        ],
    })
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn selfplay_scripted_round_end_to_end() {
    if !Path::new("/usr/bin/bwrap").exists() {
        eprintln!("skipped: bubblewrap is not installed (apt-get install bubblewrap)");
        return;
    }
    let Some(model) = model() else {
        eprintln!("skipped: the embedded model's tokenizer is not set up (run `just setup`)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("script.json");
    std::fs::write(
        &script,
        serde_json::to_string_pretty(&recorded_turns()).unwrap(),
    )
    .unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        "seed = 7\nrounds = 1\ntemperature = 0.7\ninjector_rollouts = 1\nprocedural_per_round = 0\nattempts_per_bug = 2\nattempts_per_higher_order_bug = 1\nmax_higher_order_per_round = 1\nmax_concurrent_episodes = 4\n[injector_budgets]\nmax_turns = 8\n[solver_budgets]\nmax_turns = 6\n",
    )
    .unwrap();
    let out = tmp.path().join("run");
    let ssr = env!("CARGO_BIN_EXE_ssr");
    let run = |extra: &[&str]| {
        let o = Command::new(ssr)
            .current_dir(root())
            .args(["selfplay", "--policy", "scripted", "--json"])
            .arg("--script")
            .arg(&script)
            .arg("--config")
            .arg(&config)
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<Value>(o.stdout.trim_ascii()).unwrap()
    };
    let summary = run(&[]);
    assert_eq!(summary["summary"]["model_valid"], 1, "{summary}");

    // Each verdict is stored once: a verified bug's is its report (with its source in
    // bug.json), and no verdict.json repeats it.
    let bug = out.join("bugs/r0-inj0");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(bug.join("report.json")).unwrap()).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(bug.join("bug.json")).unwrap()).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(meta["source"], "model", "{meta}");
    assert!(!bug.join("verdict.json").exists());
    let episodes = read_jsonl(&out.join("episodes.jsonl"));
    let solver: Vec<&Value> = episodes
        .iter()
        .filter(|e| e["role"] == "solver" && e["bug_id"] == "r0-inj0")
        .collect();
    assert_eq!(solver.len(), 2);
    let rewards: Vec<f64> = solver
        .iter()
        .map(|e| e["reward"].as_f64().unwrap())
        .collect();
    assert!(
        rewards.contains(&1.0) && rewards.contains(&-1.0),
        "mixed outcomes: {rewards:?}"
    );

    // Section 7: s = 1/2 → 1 − 1.8·0.5 = 0.1 for the injector.
    let trajs = read_jsonl(&out.join("trajectories.jsonl"));
    let inj = trajs.iter().find(|t| t["role"] == "injector").unwrap();
    assert!(
        (inj["reward"].as_f64().unwrap() - 0.1).abs() < 1e-6,
        "{}",
        inj["reward"]
    );
    let sol: Vec<&Value> = trajs
        .iter()
        .filter(|t| t["role"] == "solver" && t["group_id"] == "r0-inj0")
        .collect();
    assert_eq!(sol.len(), 2);
    // The sampling temperature travels with every trajectory (`ssr train` trains at it).
    for t in &trajs {
        assert_eq!(t["temperature"].as_f64(), Some(0.7), "{}", t["metadata"]);
    }

    // Token ids and masks reproduce the transcripts exactly.
    let f = ssr_trainer::gguf::GgufFile::open(&model).unwrap();
    let tok = ssr_trainer::tokenizer::Tokenizer::from_gguf(&f).unwrap();
    for t in &trajs {
        let ep = t["metadata"]["episode"].as_str().unwrap();
        let transcript: ssr_agent::Transcript = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("transcripts/{ep}.json"))).unwrap(),
        )
        .unwrap();
        let ids: Vec<u32> = serde_json::from_value(t["token_ids"].clone()).unwrap();
        let mask: Vec<u8> = serde_json::from_value(t["loss_mask"].clone()).unwrap();
        assert_eq!(tok.decode_lossy(&ids), transcript.rendered(), "{ep}");
        let sampled: Vec<u32> = ids
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m == 1)
            .map(|(i, _)| *i)
            .collect();
        let turns: String = transcript.turns.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(tok.decode_lossy(&sampled), turns, "{ep}");
    }

    // The higher-order bug from the failed patch, and the report.
    let metrics = read_jsonl(&out.join("metrics.jsonl"));
    assert_eq!(metrics.len(), 1);
    assert!(out.join("report.html").is_file());

    // Resuming a finished run redoes nothing.
    let before = std::fs::read_to_string(out.join("episodes.jsonl")).unwrap();
    let again = run(&[]);
    assert_eq!(again["summary"]["rounds"], 1);
    assert_eq!(
        std::fs::read_to_string(out.join("episodes.jsonl")).unwrap(),
        before
    );
}
