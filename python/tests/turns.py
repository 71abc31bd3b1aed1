"""Recorded model turns for the bundled example repository `python-textkit` (the same play as
`tests/it/selfplay_scripted.rs`): the injector breaks `from_roman`'s subtractive pairs and
removes the two tests that expose it; the fixing solver undoes it, the idle one does not.

They are what the `scripted` policy replays in `POST /v1/episodes` (`"script": ...`), and what a
test client sends over `/ws` as raw assistant text, one step per turn.
"""

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

SUBMIT = "<tool: submit>\n</tool>"


def bash(cmd: str) -> str:
    return f"<tool: bash>\n{cmd}\n</tool>"


INJECTOR = [
    "I will look at the history and the tests first.\n"
    + bash("git log --oneline | head -5 && ls src/textkit tests"),
    bash("mkdir -p ssr_artifact && printf '%s\\n' '#!/bin/bash' 'export PYTHONDONTWRITEBYTECODE=1' "
         "'export PYTHONPATH=src' 'python3 -m pytest -rA --tb=short -p no:cacheprovider "
         "tests/test_roman.py' > ssr_artifact/test_script.sh && echo tests/test_roman.py > "
         "ssr_artifact/test_files.txt && cat > ssr_artifact/test_parser.py <<'EOF'\n"
         + PARSER + "\nEOF\nbash ssr_artifact/test_script.sh | python3 ssr_artifact/test_parser.py"),
    bash("python3 -c \"p='src/textkit/roman.py'; s=open(p).read(); "
         "open(p,'w').write(s.replace('total -= v', 'total += v', 1))\" && git diff -- src > "
         "ssr_artifact/bug_inject.diff && cat ssr_artifact/bug_inject.diff"),
    bash(WEAKEN),
    SUBMIT,
]

SOLVER_FIX = [
    bash("grep -n 'total' src/textkit/roman.py"),
    bash("python3 -c \"p='src/textkit/roman.py'; s=open(p).read(); "
         "open(p,'w').write(s.replace('total += v', 'total -= v', 1))\""),
    SUBMIT,
]

SOLVER_IDLE = [
    bash("echo '# reviewed' >> src/textkit/roman.py"),
    SUBMIT,
]


def slow(turns, seconds: float):
    """The same turns after a shell command that takes `seconds`: keeps an episode in flight."""
    return [bash(f"sleep {seconds}")] + list(turns)


def script(role: str, turns) -> dict:
    """The `script` field of a request: one recorded episode for `role`."""
    return {role: [list(turns)]}


class Replay:
    """A policy for `/ws`: the next recorded turn on every call, whatever the observation."""

    def __init__(self, turns) -> None:
        self.turns = list(turns)
        self.next = 0

    def __call__(self, _result) -> dict:
        if self.next >= len(self.turns):
            raise AssertionError("the server asked for a turn after the script's last one")
        text = self.turns[self.next]
        self.next += 1
        return {"text": text}
