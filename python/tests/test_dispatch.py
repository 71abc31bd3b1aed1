"""The dispatcher against real servers: it retries `CAPACITY_REACHED` and re-runs an episode on
another server when the one it ran on dies mid-episode."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

import turns
from conftest import REPO, seed_bugs, wait_no_leftovers
from ssr_env import Dispatcher, Endpoint, EnvClient, NoLiveNodes, NodeUnreachable
from ssr_env.server import SsrServer


def solver(bug: str, k: int, sleep_s: float) -> dict:
    return {"role": "solver", "repo": REPO, "task_id": bug, "seed": k,
            "script": turns.script("solver", turns.slow(turns.SOLVER_FIX, sleep_s))}


def test_capacity_reached_is_retried_until_every_episode_ran(server, bug):
    # The dispatcher is told 4 slots; the server has 2, so it answers 429 to the surplus.
    overstated = Endpoint(server.endpoint.base_url, server.endpoint.token, slots=4)
    dispatcher = Dispatcher([overstated], capacity_backoff_s=0.2)
    done = dispatcher.run_episodes([solver(bug, k, 1) for k in range(4)])
    assert [d.error for d in done] == [None] * 4
    assert [d.result["reward"] for d in done] == [1.0] * 4
    assert sum(d.capacity_retries for d in done) > 0


def test_episode_reruns_elsewhere_when_its_server_dies(ssr_bin, repo_dir, server, tmp_path):
    servers = [SsrServer(ssr_bin, [repo_dir], slots=1, store=str(tmp_path / f"n{i}"),
                         node=f"n{i}") for i in range(2)]
    try:
        seed_bugs([s.endpoint for s in servers])
        bug = "bug-roman"
        dispatcher = Dispatcher([s.endpoint for s in servers])
        out = {}
        runner = threading.Thread(
            target=lambda: out.setdefault("done", dispatcher.run_episodes(
                [solver(bug, k, 2) for k in range(4)])))
        runner.start()
        victim = servers[0]
        with EnvClient(victim.endpoint) as client:
            deadline = time.monotonic() + 30
            while client.health()["episodes_running"] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        # SIGKILL: no graceful teardown; its sandboxes must die with it (die-with-parent).
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        runner.join(180)
        assert not runner.is_alive()
        done = out["done"]
        assert [d.error for d in done] == [None] * 4, [str(d.error) for d in done]
        assert all(d.endpoint.node == "n1" for d in done)
        assert any("n0" in d.tried for d in done), [d.tried for d in done]
        assert dispatcher.live_endpoints() == [servers[1].endpoint]
    finally:
        for s in servers:
            s.stop()
    # Nothing of either server remains (the session's own server is not theirs).
    assert wait_no_leftovers(names=("bwrap", "sleep", "ssr"), keep={server.proc.pid}) == []


def test_every_node_refusing_ends_in_no_live_nodes_quickly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on `port` now: every connection is refused.
    url = f"http://127.0.0.1:{port}"
    with EnvClient(url) as client, pytest.raises(NodeUnreachable) as err:
        client.health()
    assert err.value.base_url == url
    started = time.monotonic()
    done = Dispatcher([Endpoint(url)]).run_episodes([{"role": "solver", "repo": REPO}])
    assert isinstance(done[0].error, NoLiveNodes), done[0].error
    assert done[0].tried == [url]
    assert time.monotonic() - started < 10
