#!/usr/bin/env python3
"""Behaviour check for refactors of the self-play core: runs `ssr selfplay --policy
scripted` with a fixed seed and the recorded turns of tests/it/selfplay_scripted.rs,
and compares two such runs with timings removed.

    scripts/selfplay_behaviour.py run SSR_BINARY OUT_DIR [MODEL]
    scripts/selfplay_behaviour.py compare BEFORE_DIR AFTER_DIR

Compared: trajectories.jsonl (byte for byte), metrics.jsonl, episodes.jsonl, every
bug's verdict, files and the attempts' patches, each with wall-clock fields dropped.
Exit status 0 when identical, 1 with the differences printed.

A bug's verdict is compared as the run means it, whichever file holds it: since each
verdict is stored once, a verified bug has no verdict.json (its verdict is its
report.json with bug.json's "source" and its order), so the verdict is read from
verdict.json when there is one and derived otherwise. For the same reason bug.json's
"source" is not compared as a file field, and a higher-order bug's report.json is
compared through its verdict only (it used to be a copy of its parent's report).
Owns nothing the program reads; it is a check run by hand (it needs bubblewrap and the
embedded model's tokenizer, and a binary built before the change).
"""
import json
import pathlib
import subprocess
import sys

PARSER = r'''import json, re, sys
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
print(json.dumps(results))'''

WEAKEN = r'''python3 - <<'EOF'
p = "tests/test_roman.py"
chunks = open(p).read().rstrip("\n").split("\n\n\n")
keep = [c for c in chunks if not c.startswith(("def test_from_roman_subtractive", "def test_round_trip"))]
open(p, "w").write("\n\n\n".join(keep) + "\n")
EOF
git diff -- tests/test_roman.py > ssr_artifact/test_weaken.diff && cat ssr_artifact/test_weaken.diff'''


def bash(cmd):
    return f"<tool: bash>\n{cmd}\n</tool>"


def script():
    """The same turns as `recorded_turns()` in tests/it/selfplay_scripted.rs."""
    artifact = (
        "mkdir -p ssr_artifact && printf '%s\\n' '#!/bin/bash' 'export PYTHONDONTWRITEBYTECODE=1' "
        "'export PYTHONPATH=src' 'python3 -m pytest -rA --tb=short -p no:cacheprovider tests/test_roman.py' "
        "> ssr_artifact/test_script.sh && echo tests/test_roman.py > ssr_artifact/test_files.txt && "
        f"cat > ssr_artifact/test_parser.py <<'EOF'\n{PARSER}\nEOF\n"
        "bash ssr_artifact/test_script.sh | python3 ssr_artifact/test_parser.py"
    )
    return {
        "injector": [[
            "I will look at the history and the tests first.\n<tool: bash>\ngit log --oneline | head -5 && ls src/textkit tests\n</tool>",
            bash(artifact),
            bash("python3 -c \"p='src/textkit/roman.py'; s=open(p).read(); open(p,'w').write(s.replace('total -= v', 'total += v', 1))\" && git diff -- src > ssr_artifact/bug_inject.diff && cat ssr_artifact/bug_inject.diff"),
            bash(WEAKEN),
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
    }


CONFIG = """seed = 7
rounds = 2
injector_rollouts = 1
procedural_per_round = 1
attempts_per_bug = 2
attempts_per_higher_order_bug = 1
max_higher_order_per_round = 1
max_concurrent_episodes = 4
[injector_budgets]
max_turns = 8
[solver_budgets]
max_turns = 6
"""

# Wall-clock fields, dropped wherever they appear, and the trusted reporter's per-run
# secret (drawn from the OS random source by design, never the seed).
TIMINGS = {"wall_ms", "verify_ms", "evaluate_ms", "phase_ms", "generate_ms", "tool_ms",
           "elapsed_s", "duration_ms", "ms", "prep_ms", "script_ms", "parser_ms", "total_ms",
           "reporter_secret"}


def run(ssr, out, model=".models/SmolLM2-135M-Instruct.Q4_1.gguf"):
    out = pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=False)
    (out / "script.json").write_text(json.dumps(script(), indent=2))
    (out / "config.toml").write_text(CONFIG)
    cmd = [ssr, "selfplay", "--policy", "scripted", "--json", "--script", str(out / "script.json"),
           "--config", str(out / "config.toml"), "--model", model, "--out", str(out / "run")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    (out / "stdout.json").write_text(p.stdout)
    (out / "stderr.txt").write_text(p.stderr)
    if p.returncode != 0:
        sys.exit(f"ssr failed ({p.returncode}):\n{p.stderr[-4000:]}")
    print(p.stdout.strip())


def strip(v):
    if isinstance(v, dict):
        out = {k: strip(x) for k, x in v.items() if k not in TIMINGS}
        # A higher-order bug's provenance names its parent: by its directory before the
        # bug store owned the layout, by its id since (the same parent either way).
        c = out.get("candidate")
        if isinstance(c, str) and c.startswith("higher-order of "):
            out["candidate"] = "higher-order of " + c[len("higher-order of "):].rsplit("/", 1)[-1]
        return out
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v


def jsonl(p):
    if not p.exists():
        return []
    return [strip(json.loads(l)) for l in p.read_text().splitlines() if l.strip()]


def verdict_of(bug):
    """The bug's verdict: verdict.json when stored, else derived from its report."""
    v = bug / "verdict.json"
    if v.exists():
        return strip(json.loads(v.read_text()))
    report = json.loads((bug / "report.json").read_text())
    meta = json.loads((bug / "bug.json").read_text())
    return strip({
        "bug_id": meta["id"], "source": meta.get("source", "procedural"),
        "valid": report["valid"], "reason": report["reason"], "reason_code": report["code"],
        "order": 2 if (bug / "higher_order.diff").exists() else 1,
        "fail_to_pass": report["fail_to_pass"], "pass_to_pass": report["pass_to_pass"],
    })


def views(d):
    r = pathlib.Path(d) / "run"
    out = {
        "trajectories.jsonl (bytes)": (r / "trajectories.jsonl").read_text(),
        "metrics.jsonl": jsonl(r / "metrics.jsonl"),
        "episodes.jsonl": sorted(jsonl(r / "episodes.jsonl"), key=lambda e: json.dumps(e, sort_keys=True)),
    }
    for bug in sorted((r / "bugs").iterdir()):
        out[f"bugs/{bug.name} (verdict)"] = verdict_of(bug)
        higher_order = (bug / "higher_order.diff").exists()
        for f in sorted(bug.rglob("*")):
            if not f.is_file() or f.name == "verdict.json":
                continue
            if higher_order and f.name == "report.json":
                continue
            key = f"bugs/{f.relative_to(r / 'bugs')}"
            if f.suffix == ".json":
                v = strip(json.loads(f.read_text()))
                if f.name == "bug.json":
                    v.pop("source", None)
                out[key] = v
            else:
                out[key] = f.read_text(errors="replace")
    return out


def compare(a, b):
    va, vb = views(a), views(b)
    bad = 0
    for k in sorted(set(va) | set(vb)):
        if va.get(k) != vb.get(k):
            bad += 1
            print(f"DIFFERS: {k}")
            if k in va and k in vb and isinstance(va[k], list):
                for x, y in zip(va[k], vb[k]):
                    if x != y:
                        print(f"  before: {json.dumps(x)[:600]}\n  after:  {json.dumps(y)[:600]}")
                        break
            elif k not in va or k not in vb:
                print(f"  only in {'after' if k not in va else 'before'}")
    print(f"{len(set(va) | set(vb))} files compared, {bad} differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(*sys.argv[2:])
    elif sys.argv[1:2] == ["compare"]:
        compare(*sys.argv[2:4])
    else:
        sys.exit(__doc__)
