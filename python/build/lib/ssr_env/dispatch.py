"""Spreads episodes over the nodes' servers.

`Dispatcher` holds the endpoints of several `ssr env serve` processes (one per node, see
`ssr_env.ray_nodes`) and runs jobs on them from a thread pool. A job is any function of
`(endpoint, item)`: `run_episodes` posts to the episode API, `play_episodes` drives OpenEnv's
`/ws` with a caller's policy. Per failure class (`ssr_env.errors`):

- `CapacityReached`: nothing ran; wait a little (jittered) and try again on the least loaded
  live node, up to `capacity_wait_s` in all.
- `NodeUnreachable`: the node is marked dead and the job re-runs from the start on another node.
  An episode is a pure function of its request and its sandbox, so re-running it elsewhere is
  the whole recovery; the dead node's sandboxes die with its server.
- anything else (`ServerError`, a bug): the job fails; retrying would fail the same way.

Why threads and not asyncio: each job blocks on one long HTTP or WebSocket call, the count is
bounded by the slots (tens per node), and a trainer calls this from synchronous code.
Why local slot accounting on top of the server's 429: it keeps the dispatcher from hammering a
full server; the 429 still covers other clients sharing the same servers.

Does not own: starting servers (`ray_nodes`), the wire formats (`client`, `ws`).
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, TypeVar

from .client import Endpoint, EnvClient, new_episode_id
from .errors import CapacityReached, NoLiveNodes, NodeUnreachable
from .ws import StepResult, play

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Dispatched(Generic[R]):
    """The outcome of one job: its result or error, where it finally ran, and what it took."""

    item: Any
    result: Optional[R] = None
    error: Optional[BaseException] = None
    endpoint: Optional[Endpoint] = None
    #: Every node the job was started on, in order (a node that died mid-job appears first).
    tried: List[str] = field(default_factory=list)
    capacity_retries: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Node:
    endpoint: Endpoint
    in_flight: int = 0
    alive: bool = True
    served: int = 0


class Dispatcher:
    """Runs jobs over endpoints; see the module doc for the retry rules."""

    def __init__(self, endpoints: Iterable[Endpoint], *, capacity_wait_s: float = 600.0,
                 capacity_backoff_s: float = 0.25, max_node_failures: int = 8) -> None:
        self._nodes: List[_Node] = [_Node(e) for e in endpoints]
        if not self._nodes:
            raise NoLiveNodes("no endpoints given")
        self._cv = threading.Condition()
        self.capacity_wait_s = capacity_wait_s
        self.capacity_backoff_s = capacity_backoff_s
        #: A job that has seen this many nodes die under it fails (bounds a crash loop).
        self.max_node_failures = max_node_failures

    # ---- nodes --------------------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> None:
        with self._cv:
            self._nodes.append(_Node(endpoint))
            self._cv.notify_all()

    def live_endpoints(self) -> List[Endpoint]:
        with self._cv:
            return [n.endpoint for n in self._nodes if n.alive]

    def served(self) -> Dict[str, int]:
        """Jobs finished per node (label or base URL), dead nodes included."""
        with self._cv:
            return {(n.endpoint.node or n.endpoint.base_url): n.served for n in self._nodes}

    def total_slots(self) -> int:
        with self._cv:
            return sum(max(1, n.endpoint.slots) for n in self._nodes if n.alive)

    def _acquire(self, deadline: float) -> _Node:
        """The live node with the most free slots; waits while all are busy."""
        with self._cv:
            while True:
                live = [n for n in self._nodes if n.alive]
                if not live:
                    raise NoLiveNodes("every node is dead")
                free = [n for n in live if n.in_flight < max(1, n.endpoint.slots)]
                if free:
                    best = max(free, key=lambda n: (max(1, n.endpoint.slots) - n.in_flight,
                                                    -n.served))
                    best.in_flight += 1
                    return best
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CapacityReached("every slot of every live node stayed busy",
                                          code="CAPACITY_REACHED")
                self._cv.wait(timeout=min(left, 1.0))

    def _release(self, node: _Node, *, dead: bool = False, done: bool = False) -> None:
        with self._cv:
            node.in_flight -= 1
            if dead:
                node.alive = False
            if done:
                node.served += 1
            self._cv.notify_all()

    # ---- jobs ---------------------------------------------------------------------------------

    def run(self, job: Callable[[Endpoint, T], R], item: T) -> Dispatched[R]:
        """Runs one job to its end under the retry rules; never raises (see `Dispatched.error`)."""
        out: Dispatched[R] = Dispatched(item)
        deadline = time.monotonic() + self.capacity_wait_s
        failures = 0
        while True:
            try:
                node = self._acquire(deadline)
            except (NoLiveNodes, CapacityReached) as e:
                out.error = e
                return out
            out.tried.append(node.endpoint.node or node.endpoint.base_url)
            try:
                out.result = job(node.endpoint, item)
            except CapacityReached as e:
                self._release(node)
                out.capacity_retries += 1
                if time.monotonic() >= deadline:
                    out.error = e
                    return out
                # Jitter so that clients refused together do not come back together.
                time.sleep(self.capacity_backoff_s * (0.5 + random.random()))
                continue
            except NodeUnreachable as e:
                self._release(node, dead=True)
                failures += 1
                if failures >= self.max_node_failures:
                    out.error = e
                    return out
                continue
            except Exception as e:  # noqa: BLE001 - a job's own failure is its result
                self._release(node)
                out.error = e
                return out
            self._release(node, done=True)
            out.endpoint = node.endpoint
            return out

    def map(self, job: Callable[[Endpoint, T], R], items: Sequence[T], *,
            max_workers: Optional[int] = None) -> List[Dispatched[R]]:
        """Runs every item, at most `max_workers` (default: all live slots) at a time; results in
        the order of `items`."""
        workers = max_workers or max(1, self.total_slots())
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ssr-dispatch") as pool:
            return list(pool.map(lambda it: self.run(job, it), items))

    # ---- the two episode shapes ---------------------------------------------------------------

    def run_episodes(self, requests: Sequence[Dict[str, Any]], *, timeout_s: float = 900.0,
                     max_workers: Optional[int] = None) -> List[Dispatched[Dict[str, Any]]]:
        """`POST /v1/episodes` for each request, spread over the nodes. Each request gets an
        `episode_id` if it has none; a re-run on another node keeps it."""
        prepared = [dict(r, episode_id=r.get("episode_id") or new_episode_id())
                    for r in requests]

        def job(endpoint: Endpoint, request: Dict[str, Any]) -> Dict[str, Any]:
            with EnvClient(endpoint, timeout_s=timeout_s) as client:
                return client.run_episode(request)

        return self.map(job, prepared, max_workers=max_workers)

    def play_episodes(self, resets: Sequence[Dict[str, Any]],
                      policy_for: Callable[[Dict[str, Any]], Callable[[StepResult], Any]], *,
                      timeout_s: float = 300.0, max_steps: int = 256,
                      max_workers: Optional[int] = None) -> List[Dispatched[StepResult]]:
        """Plays each episode over `/ws`: `policy_for(reset)` gives a fresh policy per attempt,
        so a re-run on another node starts the policy from its first turn again."""

        def job(endpoint: Endpoint, reset: Dict[str, Any]) -> StepResult:
            return play(endpoint, reset, policy_for(reset), max_steps=max_steps,
                        timeout_s=timeout_s)

        return self.map(job, resets, max_workers=max_workers)
