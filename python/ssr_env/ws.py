"""OpenEnv's WebSocket protocol (`GET /ws`) as a small synchronous session.

One `Session` is one connection and so one episode workspace on the server. Frames in and out
follow OpenEnv (openenv-core 0.3): `{"type":"reset"|"step"|"state"|"close","data":{...}}` in,
`{"type":"observation","data":{"observation":{...},"reward":r,"done":b}}` or
`{"type":"error","data":{"message","code"}}` out, strictly one answer per request.

Why not openenv-core's own `GenericEnvClient`: it sends no credentials (only URL userinfo) and
pulls in FastAPI, Gradio and more; this session adds the bearer token and maps errors to
`ssr_env.errors`. The tests drive the server with the real `GenericEnvClient` too.

Does not own: choosing what to send (the caller's policy), choosing a node (`dispatch`).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Union

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from .client import Endpoint
from .errors import CapacityReached, NodeUnreachable, ProtocolError, ServerError

# websockets 17 warns unless a directly held connection says `legacy=True`; older releases
# (>= 15) have no such argument and return the connection directly anyway.
_CONNECT_KW = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


@dataclass
class StepResult:
    """What the server said after a reset or a step."""

    observation: Dict[str, Any] = field(default_factory=dict)
    reward: Optional[float] = None
    done: bool = False


def ws_url(base_url: str) -> str:
    """`http://h:p` → `ws://h:p/ws` (and https → wss), as openenv-core does."""
    url = base_url.rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://"):]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://"):]
    elif not url.startswith(("ws://", "wss://")):
        url = "ws://" + url
    return url + "/ws"


class Session:
    """One OpenEnv session on `ssr env serve`. Use as a context manager; `close()` ends the
    episode and the server drops its sandboxes."""

    def __init__(self, endpoint: Union[Endpoint, str], *, timeout_s: float = 300.0,
                 connect_timeout_s: float = 10.0) -> None:
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint)
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        try:
            self._ws = connect(ws_url(endpoint.base_url), additional_headers=endpoint.headers(),
                               open_timeout=connect_timeout_s, max_size=64 * 1024 * 1024,
                               proxy=None, **_CONNECT_KW)
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode("utf-8", "replace") if e.response.body else ""
            cls = CapacityReached if status == 429 or "CAPACITY_REACHED" in body else ServerError
            raise cls(f"/ws upgrade refused: {body[:200]}", status=status) from e
        except (OSError, TimeoutError, WebSocketException) as e:
            raise NodeUnreachable(endpoint.base_url, e) from e
        self._answered = False

    def _request(self, message: Dict[str, Any]) -> Dict[str, Any]:
        try:
            self._ws.send(json.dumps(message))
            raw = self._ws.recv(timeout=self.timeout_s)
        except TimeoutError as e:
            raise NodeUnreachable(self.endpoint.base_url, e) from e
        except ConnectionClosed as e:
            # A server over capacity may close before its first answer (openenv-core's own
            # server does exactly that); after an answer, a close means the node went away.
            if not self._answered and e.rcvd is not None and e.rcvd.code == 1013:
                raise CapacityReached("server closed the session: try again later",
                                      code="CAPACITY_REACHED") from e
            raise NodeUnreachable(self.endpoint.base_url, e) from e
        except OSError as e:
            raise NodeUnreachable(self.endpoint.base_url, e) from e
        try:
            frame = json.loads(raw)
        except ValueError as e:
            raise ProtocolError(f"frame is not JSON: {raw[:200]!r}") from e
        if not isinstance(frame, dict):
            raise ProtocolError(f"frame is not an object: {raw[:200]!r}")
        if frame.get("type") == "error":
            data = frame.get("data") or {}
            code = data.get("code")
            cls = CapacityReached if code == "CAPACITY_REACHED" else ServerError
            raise cls(str(data.get("message", "unknown error")), code=code, body=data)
        self._answered = True
        return frame

    @staticmethod
    def _result(frame: Dict[str, Any]) -> StepResult:
        data = frame.get("data") or {}
        reward = data.get("reward")
        return StepResult(observation=data.get("observation") or {},
                          reward=float(reward) if reward is not None else None,
                          done=bool(data.get("done", False)))

    def reset(self, **kwargs: Any) -> StepResult:
        """Starts the episode: `role`, `repo`, `task_id` (solver), `seed`, `episode_id`..."""
        return self._result(self._request({"type": "reset", "data": kwargs}))

    def step(self, action: Union[str, Dict[str, Any]]) -> StepResult:
        """A step: raw assistant text (a `str`, parsed by ssr as the agent loop does) or a dict
        (`{"text": ...}` or a direct tool call `{"type":"call_tool","tool_name","arguments"}`)."""
        data = {"text": action} if isinstance(action, str) else action
        return self._result(self._request({"type": "step", "data": data}))

    def state(self) -> Dict[str, Any]:
        return self._request({"type": "state"}).get("data") or {}

    def close(self) -> None:
        try:
            self._ws.send(json.dumps({"type": "close"}))
        except (ConnectionClosed, OSError):
            pass
        self._ws.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def play(endpoint: Union[Endpoint, str], reset: Dict[str, Any],
         policy: Callable[[StepResult], Union[str, Dict[str, Any]]], *, max_steps: int = 256,
         timeout_s: float = 300.0) -> StepResult:
    """Plays one episode over `/ws`: `reset`, then `policy(last result)` until `done`.

    Returns the last result (its `reward` is the episode's). A server that never says `done`
    within `max_steps` is a `ProtocolError` (the server's own turn budget should end it first).
    """
    with Session(endpoint, timeout_s=timeout_s) as session:
        result = session.reset(**reset)
        for _ in range(max_steps):
            if result.done:
                return result
            result = session.step(policy(result))
        if result.done:
            return result
        raise ProtocolError(f"episode not done after {max_steps} steps")
