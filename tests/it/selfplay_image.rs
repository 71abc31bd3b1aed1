//! `ssr selfplay --policy scripted` on the SWE-bench-layout image through the real
//! engine, once with bubblewrap over the unpacked root and once with `docker run` per
//! command: the settings file names the image and its gold patch (`base_patch`,
//! relative to the file), the repository is taken out of `/testbed`, the injector's
//! and solvers' shell commands run in the image (its `git`, its `python3`, its own
//! `tallyfmt` package), and the round ends with a valid bug and mixed solver rewards.
//! Without the gold patch the run is refused, naming the failing test and the
//! setting; a resumed run keeps its image settings and refuses a conflicting one; no
//! container of the run is left behind. Skips with a printed reason where no engine
//! answers (`game_image::engine_or_skip`).

use crate::game_image::{IMAGE, engine_or_skip, gold_patch};
use crate::ssr;
use serde_json::{Value, json};
use std::path::Path;

fn bash(cmd: &str) -> Value {
    json!(format!("<tool: bash>\n{cmd}\n</tool>"))
}

/// The injector breaks `tally.stats.spread` (off by one), removes the test that
/// exposes it and writes the five files, using the image's git and python; solver 0
/// fixes it, solver 1 makes an irrelevant edit.
fn recorded_turns() -> Value {
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
    let files = "tests/test_stats.py tests/test_words.py";
    let script = format!(
        "mkdir -p ssr_artifact && printf '%s\\n' '#!/bin/bash' 'export PYTHONDONTWRITEBYTECODE=1' 'python3 -m pytest -rA --tb=short -p no:cacheprovider {files}' > ssr_artifact/test_script.sh && printf '%s\\n' {files} > ssr_artifact/test_files.txt && cat > ssr_artifact/test_parser.py <<'EOF'\n{parser}\nEOF\nbash ssr_artifact/test_script.sh | python3 ssr_artifact/test_parser.py"
    );
    let weaken = r#"python3 - <<'EOF'
p = "tests/test_stats.py"
chunks = open(p).read().rstrip("\n").split("\n\n\n")
keep = [c for c in chunks if not c.startswith("def test_spread")]
open(p, "w").write("\n\n\n".join(keep) + "\n")
EOF
git diff -- tests/test_stats.py > ssr_artifact/test_weaken.diff && cat ssr_artifact/test_weaken.diff"#;
    json!({
        "injector": [[
            bash("pwd && git log --oneline | head -3 && ls src/tally tests"),
            bash(&script),
            bash("python3 -c \"p='src/tally/stats.py'; s=open(p).read(); open(p,'w').write(s.replace('max(values) - min(values)', 'max(values) - min(values) + 1', 1))\" && git diff -- src > ssr_artifact/bug_inject.diff && cat ssr_artifact/bug_inject.diff"),
            bash(weaken),
            "<tool: submit>\n</tool>",
        ]],
        "solver": [
            [
                bash("grep -n 'min(values)' src/tally/stats.py"),
                bash("python3 -c \"p='src/tally/stats.py'; s=open(p).read(); open(p,'w').write(s.replace(' + 1', '', 1))\""),
                "<tool: submit>\n</tool>",
            ],
            [
                bash("echo '# reviewed' >> src/tally/stats.py"),
                "<tool: submit>\n</tool>",
            ],
        ],
    })
}

/// Runs `ssr selfplay` in `dir` and checks that no container it named is left once it
/// has exited: (exit code, stdout, stderr).
fn selfplay(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let child = ssr()
        .current_dir(dir)
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        )
        .env("SSR_IMAGE_CACHE", dir.join("cache"))
        .args(["selfplay", "--policy", "scripted", "--json"])
        .args(["--script", "script.json", "--out", "run"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssr runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_no_container_of(pid);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every container the sandbox makes is named `ssr-sandbox-<pid>-...` by its maker.
fn assert_no_container_of(pid: u32) {
    let (_, program) = ssr_sandbox::first_engine().unwrap();
    let out = std::process::Command::new(program)
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .args(["--filter", &format!("name=ssr-sandbox-{pid}-")])
        .output()
        .unwrap();
    assert!(out.status.success());
    let left = String::from_utf8_lossy(&out.stdout);
    assert!(left.trim().is_empty(), "containers left behind: {left}");
}

const CONFIG: &str = "seed = 7\nrounds = 1\ninjector_rollouts = 1\nprocedural_per_round = 0\nattempts_per_bug = 2\nmax_higher_order_per_round = 0\nmax_concurrent_episodes = 2\n[injector_budgets]\nmax_turns = 8\n[solver_budgets]\nmax_turns = 6\n";

fn selfplay_on_the_image(exec: &str) {
    if !engine_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("script.json"),
        serde_json::to_string(&recorded_turns()).unwrap(),
    )
    .unwrap();
    std::fs::copy(gold_patch(), dir.join("gold.patch")).unwrap();
    let image = format!("image = \"{IMAGE}\"\nimage_exec = \"{exec}\"\n");
    std::fs::write(dir.join("buggy.toml"), format!("{image}{CONFIG}")).unwrap();
    std::fs::write(
        dir.join("clean.toml"),
        format!("{image}base_patch = \"gold.patch\"\n{CONFIG}"),
    )
    .unwrap();

    // The image as shipped holds the benchmark's bug: refused, with the test and the fix.
    let (code, out, err) = selfplay(dir, &["--config", "buggy.toml"]);
    assert_ne!(code, 0, "{exec}: {out}\n{err}");
    assert!(err.contains("test_median_even"), "{exec}: {err}");
    assert!(err.contains("base_patch"), "{exec}: {err}");
    let _ = std::fs::remove_dir_all(dir.join("run"));

    let (code, out, err) = selfplay(dir, &["--config", "clean.toml"]);
    assert_eq!(code, 0, "{exec}: {out}\n{err}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["summary"]["model_valid"], 1, "{exec}: {summary}");
    let run = dir.join("run");
    let episodes: Vec<Value> = std::fs::read_to_string(run.join("episodes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut rewards: Vec<f64> = episodes
        .iter()
        .filter(|e| e["role"] == "solver")
        .map(|e| e["reward"].as_f64().unwrap())
        .collect();
    rewards.sort_by(f64::total_cmp);
    assert_eq!(rewards, [-1.0, 1.0], "{exec}: {episodes:?}");
    // The injector's shell ran at the image's repository path, on the history the
    // game gave the repository it took out of the image.
    let transcripts: String = std::fs::read_dir(run.join("transcripts"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(transcripts.contains("/testbed"), "{exec}: {transcripts}");
    assert!(transcripts.contains("base patch"), "{exec}: {transcripts}");

    // The run's bugs carry the image for `ssr export swebench`.
    let export = ssr()
        .args(["export", "swebench"])
        .arg(run.join("bugs"))
        .output()
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    let line: Value = serde_json::from_slice(export.stdout.trim_ascii()).unwrap();
    assert_eq!(line["image_name"], IMAGE, "{exec}: {line}");
    assert_eq!(line["workdir"], "/testbed", "{exec}: {line}");

    // run.json keeps the image settings; a resumed run refuses a conflicting one.
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["config"]["selfplay"]["image"], IMAGE);
    assert_eq!(meta["config"]["image"]["workdir"], "/testbed");
    let other = if exec == "docker" { "rootfs" } else { "docker" };
    let (code, _, err) = selfplay(dir, &["--image-exec", other]);
    assert_ne!(code, 0, "{exec}: {err}");
    assert!(err.contains("--image-exec"), "{exec}: {err}");
    let before = std::fs::read_to_string(run.join("episodes.jsonl")).unwrap();
    let (code, out, err) = selfplay(dir, &[]);
    assert_eq!(code, 0, "{exec}: {out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(run.join("episodes.jsonl")).unwrap(),
        before
    );
}

#[test]
fn selfplay_scripted_on_a_swebench_image_through_the_unpacked_root() {
    selfplay_on_the_image("rootfs");
}

#[test]
fn selfplay_scripted_on_a_swebench_image_through_docker_run() {
    selfplay_on_the_image("docker");
}
