"""Scale-out on Ray: a head with no CPUs and two simulated nodes (`ray.cluster_utils.Cluster`),
one `SsrNode` actor and server per node, scripted solver episodes spread over both, one node
removed while its episode runs; every episode still finishes, and no server or sandbox is
left behind.

Runs only inside a private network namespace with only loopback up (`scripts/env_test.sh` sets
`SSR_ENV_NETNS=1` after `unshare --net`): elsewhere Ray advertises the machine's external
address, which the simulated nodes may not reach. `scripts/env_test.sh` exits 1 where it cannot
make one, unless `SSR_ENV_ALLOW_NO_NETNS=1`: this test never skips silently in CI.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import turns
from conftest import BUG, REPO, seed_bugs, wait_no_leftovers
from ssr_env import EnvClient

pytestmark = pytest.mark.skipif(
    os.environ.get("SSR_ENV_NETNS") != "1",
    reason="needs a private network namespace: run scripts/env_test.sh (unshare --net)")

EPISODES = 6


def test_two_nodes_one_removed_mid_run(ssr_bin, repo_dir, server, tmp_path):
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    from ssr_env.ray_nodes import NodePool

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    pool = None
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        # One store per node, each given the same task through the API.
        pool = NodePool(ssr_bin, [repo_dir], store=str(tmp_path / "{node_id}"))
        assert len(pool.endpoints) == 2
        assert {e.node for e in pool.endpoints} == {n.node_id for n in nodes}
        assert all(e.token and e.slots == 1 for e in pool.endpoints)
        assert all(e.base_url.startswith("http://127.0.0.1:") for e in pool.endpoints)

        seed_bugs(pool.endpoints)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.node_id for n in nodes)

        dispatcher = pool.dispatcher()
        requests = [{"role": "solver", "repo": REPO, "task_id": BUG, "seed": k,
                     "script": turns.script("solver", turns.slow(turns.SOLVER_FIX, 2))}
                    for k in range(EPISODES)]
        out = {}
        runner = threading.Thread(
            target=lambda: out.setdefault("done", dispatcher.run_episodes(requests)))
        runner.start()

        victim = nodes[0]
        victim_endpoint = next(e for e in pool.endpoints if e.node == victim.node_id)
        with EnvClient(victim_endpoint) as client:
            deadline = time.monotonic() + 60
            while client.health()["episodes_running"] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.health()["episodes_running"] == 1
        cluster.remove_node(victim)

        runner.join(300)
        assert not runner.is_alive(), "the run did not finish after a node was removed"
        done = out["done"]
        assert [d.error for d in done] == [None] * EPISODES, [str(d.error) for d in done]
        assert [d.result["reward"] for d in done] == [1.0] * EPISODES
        # Episodes started on both nodes; the victim, removed during its first, finished none,
        # and the episode cut by the removal ran again, to its end, on the survivor.
        assert {n for d in done for n in d.tried} == {n.node_id for n in nodes}
        assert dispatcher.served() == {victim.node_id: 0, nodes[1].node_id: EPISODES}
        rerun = [d for d in done if victim.node_id in d.tried and d.endpoint.node != victim.node_id]
        assert rerun, [d.tried for d in done]
        assert dispatcher.live_endpoints() == [e for e in pool.endpoints if e.node != victim.node_id]
    finally:
        if pool is not None:
            pool.shutdown()
        ray.shutdown()
        cluster.shutdown()
    # The session's own server (fixture `server`) is the one `ssr` that stays.
    assert wait_no_leftovers(names=("bwrap", "ssr", "sleep"), keep={server.proc.pid}) == []
