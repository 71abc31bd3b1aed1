"""Python side of `ssr env serve`: a client for the episode API and OpenEnv's WebSocket
protocol, a dispatcher that spreads episodes over several servers, and (with the `ray` extra)
a Ray actor that runs one server per node.

    from ssr_env import EnvClient, Dispatcher, Endpoint
    client = EnvClient("http://127.0.0.1:8790")
    answer = client.run_episode({"role": "solver", "repo": "python-textkit",
                                 "task_id": tid, "llm": {"base_url": url, "model": "policy"}})
"""

from .client import Endpoint, EnvClient, new_episode_id
from .dispatch import Dispatched, Dispatcher
from .errors import (CapacityReached, NoLiveNodes, NodeUnreachable, ProtocolError, ServerError,
                     SsrEnvError)
from .ws import Session, StepResult, play

__all__ = [
    "CapacityReached", "Dispatched", "Dispatcher", "Endpoint", "EnvClient", "NoLiveNodes",
    "NodeUnreachable", "ProtocolError", "ServerError", "Session", "SsrEnvError", "StepResult",
    "new_episode_id", "play",
]
