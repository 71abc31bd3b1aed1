"""The before/after table of a `just learn` run (scripts/learn.sh writes the run dir).

Reads the held-out evaluations (eval/base.json, eval/warm.json, eval/rl.json and the
training-bug ones, each `ssr heldout --json`), the split's held-out ids and the
self-play run's metrics.jsonl and episodes.jsonl, and prints the policies side by side:
pass@K with its 95 % Wilson interval, malformed-call rate, mean turns and tokens, valid
artifacts; then the held-out and excluded bug counts, and per round the share of
groups with a non-zero advantage and whether the weights' fingerprint changed.
`--json` prints the same as one object.
"""

import argparse
import json
import pathlib
import sys
from collections import defaultdict

POLICIES = [("base", "base model"), ("warm", "warm start"), ("rl", "after RL")]
COLUMNS = ["policy", "bugs", "pass@K", "95% Wilson", "malformed", "turns", "tokens", "valid artifacts"]


def load_jsonl(path):
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a killed run's torn last line (rundir.rs)
    return rows


def evaluation(run, name):
    path = run / "eval" / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["report"]


def row(label, r):
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    ci = r.get("solve_rate_ci95")
    return {
        "policy": label,
        "bugs": r["bugs_scored"],
        "pass@K": fmt(r["solve_rate"]),
        "95% Wilson": "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]",
        "malformed": fmt(r["malformed_rate"]),
        "turns": fmt(r["mean_turns"]),
        "tokens": "-" if r["mean_sampled_tokens"] is None else f"{r['mean_sampled_tokens']:.0f}",
        "valid artifacts": fmt(r["valid_artifact_rate"]),
    }


def rounds(run):
    """Per round: groups with a non-zero advantage (their rewards differ) and the
    fingerprint of the weights before and after the round's training step."""
    groups = defaultdict(lambda: defaultdict(set))
    for e in load_jsonl(run / "selfplay" / "episodes.jsonl"):
        if e.get("reward") is not None:
            groups[e["round"]][e["group_id"]].add(e["reward"])
    out = []
    for m in load_jsonl(run / "selfplay" / "metrics.jsonl"):
        g = groups.get(m["round"], {})
        varied = sum(1 for rewards in g.values() if len(rewards) > 1)
        train = m.get("train") or {}
        out.append({
            "round": m["round"],
            "groups": len(g),
            "groups_nonzero_advantage": varied,
            "nonzero_fraction": varied / len(g) if g else None,
            "held_out_excluded": m.get("held_out_excluded", 0),
            "weights_before": m.get("weights_used"),
            "weights_after": train.get("weights_after"),
            "fingerprint_changed": bool(train) and train.get("weights_after") != m.get("weights_used"),
            "no_signal": train.get("no_signal"),
            "loss": train.get("loss"),
        })
    return out


def summary(run, seconds):
    held_ids = [l for l in (run / "heldout-ids.txt").read_text().splitlines()
                if l.strip() and not l.lstrip().startswith("#")]
    tables = {}
    for kind, prefix in [("held_out", ""), ("training_bugs", "train-")]:
        rows = [row(label, r) for name, label in POLICIES
                if (r := evaluation(run, prefix + name)) is not None]
        if rows:
            tables[kind] = rows
    per_round = rounds(run)
    return {
        "run": str(run),
        "seconds": seconds,
        "columns": COLUMNS,
        "tables": tables,
        "held_out_bugs": len(held_ids),
        "training_bugs": sum(1 for p in (run / "train-bugs").iterdir() if p.is_dir()),
        "excluded_by_split": sum(r["held_out_excluded"] for r in per_round),
        "rounds": per_round,
        "report": str(run / "selfplay" / "report.html"),
    }


def print_table(rows):
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=pathlib.Path, help="the run directory of scripts/learn.sh")
    ap.add_argument("--seconds", type=int, default=None, help="the run's wall time")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    s = summary(args.run, args.seconds)
    if args.json:
        json.dump(s, sys.stdout, indent=2)
        print()
        return
    for kind, rows in s["tables"].items():
        print(f"== {kind.replace('_', ' ')} ==")
        print_table(rows)
    print(f"held-out bugs: {s['held_out_bugs']}; training bugs: {s['training_bugs']}; "
          f"bugs excluded by the split during self-play: {s['excluded_by_split']}")
    for r in s["rounds"]:
        frac = "-" if r["nonzero_fraction"] is None else f"{r['nonzero_fraction']:.2f}"
        print(f"round {r['round']}: {r['groups_nonzero_advantage']}/{r['groups']} groups "
              f"with non-zero advantage ({frac}); fingerprint changed: "
              f"{'yes' if r['fingerprint_changed'] else 'no'}"
              + (f"; {r['no_signal']}" if r["no_signal"] else ""))
    print(f"report: {s['report']}")


if __name__ == "__main__":
    main()
