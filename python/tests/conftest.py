"""Fixtures: the real `ssr` debug binary, the bundled example repository, a running
`ssr env serve`, a valid bug made by a scripted injector episode, and a leak check.

Leaks are checked among this test process's own descendants: the process makes itself a
child subreaper, so a server or sandbox orphaned by a killed parent (a Ray node removed) is
re-parented here rather than to init, and stays visible to `leftovers()`. Other engineers'
`bwrap` processes on the same machine are never counted. Zombies are dead and not counted;
they are not reaped either, since `waitpid(-1)` would steal the exit status of a `Popen`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from ssr_env import EnvClient  # noqa: E402
from ssr_env.server import SsrServer  # noqa: E402

import turns  # noqa: E402

_PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

REPO = "python-textkit"
BUG = "bug-roman"


def _proc_table() -> Dict[int, tuple]:
    """pid → (ppid, comm, state) of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; the fields after it are fixed.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), comm, fields[0])
    return table


def leftovers(names=("bwrap", "ssr"), keep=()) -> List[str]:
    """Live (not zombie) descendants of this process with one of `names`, except the pids
    `keep` and their own descendants (a server another fixture still owns, and its sandboxes)."""
    table = _proc_table()
    me = os.getpid()
    found = []
    for pid, (ppid, comm, state) in table.items():
        if comm not in names or state == "Z" or pid in keep:
            continue
        p, hops = ppid, 0
        while p not in (0, 1, me) and p not in keep and hops < 64:
            p, hops = table.get(p, (0,))[0], hops + 1
        if p == me:
            found.append(f"{pid} {comm}")
    return found


def busy_sandboxes() -> List[str]:
    """Descendant `bwrap` processes that run something (have a live child).

    A server keeps idle pre-started launchers (a lone `bwrap` waiting on a pipe, see
    `runtime/sandbox/src/pool.rs`) on purpose; a sandbox still running a command after its
    episode ended is a leak."""
    table = _proc_table()
    mine = {int(p.split()[0]) for p in leftovers(("bwrap",))}
    return [f"{pid} bwrap" for pid in mine
            if any(ppid == pid and state != "Z" for ppid, _, state in table.values())]


def wait_no_busy_sandboxes(timeout_s: float = 15.0) -> List[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        busy = busy_sandboxes() + leftovers(("sleep",))
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.2)


def wait_no_leftovers(timeout_s: float = 15.0, names=("bwrap", "ssr"), keep=()) -> List[str]:
    """Leftovers still there after up to `timeout_s` (teardown is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = leftovers(names, keep)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture(scope="session")
def ssr_bin() -> str:
    path = Path(os.environ.get("SSR_BIN", ROOT / "target/debug/ssr"))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `cargo build -p ssr` (scripts/env_test.sh does)")
    return str(path)


@pytest.fixture(scope="session")
def repo_dir(ssr_bin, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("examples")
    subprocess.run([ssr_bin, "examples", "create", "--out", str(out)], check=True,
                   capture_output=True, cwd=ROOT, timeout=120)
    path = out / REPO
    assert (path / ".git").exists(), f"ssr examples create made no {path}"
    return str(path)


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> str:
    """The session server's store. No other server may use it: a server's scratch space is in
    its store (see test_servers_sharing_a_store_keep_each_others_scratch)."""
    return str(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def server(ssr_bin, repo_dir, store_dir):
    """One loopback server with two slots and no token (so openenv-core's client can reach it)."""
    srv = SsrServer(ssr_bin, [repo_dir], slots=2, store=store_dir, token=None)
    yield srv
    code = srv.stop()
    # SIGTERM ends the server (0 if it handles the signal, -15 if not); either way nothing of it
    # may remain: no sandbox, no idle launcher.
    assert code in (0, -15), f"server exit {code}: {srv.log_tail()}"
    assert wait_no_leftovers(names=("bwrap", "sleep"), keep=()) == []


def seed_bug(endpoint) -> str:
    """Makes the valid bug `BUG` in a server's store with the scripted injector episode."""
    with EnvClient(endpoint) as client:
        if any(t["task_id"] == BUG for t in client.tasks(REPO)):
            return BUG
        answer = client.run_episode({
            "role": "injector", "repo": REPO, "episode_id": BUG, "seed": 7,
            "script": turns.script("injector", turns.INJECTOR)})
        assert answer["status"] == "ok", answer
        assert answer["reward"] == 1.0, answer.get("result")
        assert any(t["task_id"] == BUG for t in client.tasks(REPO)), client.tasks(REPO)
    return BUG


def seed_bugs(endpoints) -> None:
    """`seed_bug` on several servers at once."""
    errors = []

    def one(e):
        try:
            seed_bug(e)
        except BaseException as ex:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(ex)

    threads = [threading.Thread(target=one, args=(e,)) for e in endpoints]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def bug(server) -> str:
    """A valid bug in the session server's store, made by the scripted injector episode."""
    return seed_bug(server.endpoint)
