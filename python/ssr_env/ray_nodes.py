"""One long-lived `ssr env serve` per Ray node, owned by a Ray actor.

`SsrNode` is the actor: on its node it starts an `SsrServer` (`ssr env serve --port 0 --json
--slots <node CPUs> --token <fresh random>`, bound to the node's address) and reports its
`Endpoint` (URL, token, slots, node id). The server is the actor's child with
`PR_SET_PDEATHSIG`: when the actor's process dies (the actor killed, its node removed, its
worker crashed) the server gets SIGTERM, so no server outlives its actor.

`NodePool` places one actor on each alive node (hard node affinity) and hands a `Dispatcher`
their endpoints. Ray is imported only here, so the rest of `ssr_env` works without it
(`pip install ./python[ray]`).

Why a long-lived server per node rather than a Ray task per episode: the server keeps its warm
state (wasmtime engine, compiled tool components, pre-started sandboxes) across episodes.
Does not own: retry and spreading (`dispatch`), the server's behaviour (`runtime/env/`).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .client import Endpoint, EnvClient
from .dispatch import Dispatcher
from .errors import SsrEnvError
from .server import SsrServer

class SsrNode:
    """The Ray actor: one `SsrServer` on the node it is placed on. Created by `NodePool`, or
    directly with `ray.remote(SsrNode).options(...)`."""

    def __init__(self, binary: str, repos: Sequence[str], *, slots: Optional[int] = None,
                 store: Optional[str] = None, host: Optional[str] = None,
                 extra_args: Sequence[str] = (), startup_timeout_s: float = 120.0) -> None:
        import ray

        ctx = ray.get_runtime_context()
        self.node_id = ctx.get_node_id()
        if slots is None:
            slots = _node_cpus(self.node_id)
        # Bind to the address Ray advertises for this node, so other nodes can reach it; the
        # server requires the token for anything but loopback, and every node has its own.
        host = host or ray.util.get_node_ip_address()
        if store is not None:
            # One store per node (`.../{node_id}`): each server's scratch space lives in its
            # store, so servers must not share one (see python/README.md).
            store = store.replace("{node_id}", self.node_id)
        self.server = SsrServer(binary, repos, slots=max(1, slots), host=host, store=store,
                                extra_args=extra_args, startup_timeout_s=startup_timeout_s,
                                node=self.node_id)

    def endpoint(self) -> Endpoint:
        return self.server.endpoint

    def pid(self) -> int:
        return self.server.proc.pid

    def health(self) -> Dict[str, Any]:
        with EnvClient(self.server.endpoint) as client:
            return client.health()

    def log_tail(self) -> str:
        return self.server.log_tail()

    def stop(self) -> Optional[int]:
        return self.server.stop()


def _node_cpus(node_id: str) -> int:
    """The CPUs Ray gives this node: the node's `num_cpus`, the same as its slots."""
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return int(node.get("Resources", {}).get("CPU", 1))
    return os.cpu_count() or 1


class NodePool:
    """One `SsrNode` per alive Ray node that has CPUs; `dispatcher()` spreads work over them."""

    def __init__(self, binary: str, repos: Sequence[str], *, store: Optional[str] = None,
                 extra_args: Sequence[str] = (), reserve_cpus: bool = True,
                 startup_timeout_s: float = 120.0) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = ray.remote(SsrNode)
        self.actors: List[Tuple[str, Any]] = []
        pending = []
        for node in ray.nodes():
            cpus = int(node.get("Resources", {}).get("CPU", 0))
            if not node.get("Alive") or cpus < 1:
                continue  # e.g. a head node started with num_cpus=0
            actor = remote.options(
                # Reserving the node's CPUs keeps other Ray work off the sandboxes' cores.
                num_cpus=cpus if reserve_cpus else 0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(binary, list(repos), slots=cpus, store=store, extra_args=list(extra_args),
                     startup_timeout_s=startup_timeout_s)
            self.actors.append((node["NodeID"], actor))
            pending.append(actor.endpoint.remote())
        if not self.actors:
            raise SsrEnvError("no alive Ray node with CPUs to run ssr env serve on")
        self.endpoints: List[Endpoint] = ray.get(pending, timeout=startup_timeout_s + 60)

    def dispatcher(self, **kw: Any) -> Dispatcher:
        return Dispatcher(self.endpoints, **kw)

    def shutdown(self) -> None:
        """Stops every server (gracefully where its actor still lives), then kills the actors."""
        import ray

        for _, actor in self.actors:
            try:
                ray.get(actor.stop.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead node's actor cannot answer; its server is gone
                pass
            ray.kill(actor, no_restart=True)
        self.actors = []
