"""HTTP client for the episode API of `ssr env serve`.

`EnvClient` speaks the routes of the server (`/health`, `/v1/tasks`, `/v1/episodes`,
`DELETE /v1/episodes/{id}`, `/v1/rounds`, and OpenEnv's `/metadata`, `/schema`, `/mcp`) and
turns every failure into one of `ssr_env.errors`' classes. It owns no retry policy: that is
the dispatcher's (`ssr_env.dispatch`), which needs to tell "full" from "gone" from "wrong".

Does not own: the WebSocket protocol (`ssr_env.ws`), choosing a node (`ssr_env.dispatch`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import requests

from .errors import CapacityReached, NodeUnreachable, ProtocolError, ServerError

#: Seconds to open a TCP connection. A live server on a reachable node accepts at once, so a
#: short bound turns a dead address into `NodeUnreachable` quickly.
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Endpoint:
    """Where one `ssr env serve` listens, and its bearer token (None: loopback, no token)."""

    base_url: str
    token: Optional[str] = None
    slots: int = 1
    #: Free-form label (the Ray node id when started by `SsrNode`).
    node: str = ""

    def headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def new_episode_id() -> str:
    """A client-chosen episode id, so the caller can cancel the episode while it runs."""
    return f"ep-{uuid.uuid4().hex[:16]}"


def _error_fields(body: Any) -> tuple[Optional[str], str]:
    """(code, message) from an error body; the server nests them under `error` or not."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code")
            message = inner.get("message") or inner.get("detail") or str(inner)
            return (str(code) if code is not None else None, str(message))
        return (None, str(inner))
    return (None, str(body))


class EnvClient:
    """Client of one server. Thread-safe: one `requests.Session` per client, used by many threads
    (requests' connection pool is thread-safe for independent requests)."""

    def __init__(self, endpoint: Endpoint | str, *, token: Optional[str] = None,
                 timeout_s: float = 600.0) -> None:
        if isinstance(endpoint, str):
            endpoint = Endpoint(endpoint.rstrip("/"), token)
        self.endpoint = endpoint
        #: Read timeout of one call. An episode call must outlast the server's own episode
        #: deadline; past it the node is taken for hung (`NodeUnreachable`).
        self.timeout_s = timeout_s
        self._http = requests.Session()
        # Trainer machines often have an HTTP proxy set; the env servers are cluster-local.
        self._http.trust_env = False

    # ---- plumbing -------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json: Any = None, params: Any = None,
              timeout_s: Optional[float] = None) -> requests.Response:
        url = self.endpoint.base_url + path
        try:
            response = self._http.request(
                method, url, json=json, params=params, headers=self.endpoint.headers(),
                timeout=(CONNECT_TIMEOUT_S, timeout_s or self.timeout_s))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.Timeout) as e:
            # Refused, reset, closed mid-answer, or no answer within the deadline: either way
            # this node gave no result and the caller must look elsewhere.
            raise NodeUnreachable(self.endpoint.base_url, e) from e
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            code, message = _error_fields(body)
            cls = CapacityReached if (response.status_code == 429
                                      or code == "CAPACITY_REACHED") else ServerError
            raise cls(f"{method} {path}: {message}", status=response.status_code, code=code,
                      body=body)
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._call(method, path, **kw)
        try:
            return response.json()
        except ValueError as e:
            raise ProtocolError(f"{method} {path}: not JSON: {response.text[:200]!r}") from e

    # ---- the API --------------------------------------------------------------------------

    def health(self) -> Dict[str, Any]:
        """`{"status":"healthy","slots":N,"slots_free":N,"episodes_running":N}`."""
        return self._json("GET", "/health", timeout_s=CONNECT_TIMEOUT_S)

    def tasks(self, repo: Optional[str] = None, role: str = "solver") -> List[Dict[str, Any]]:
        """The valid bugs of the server's store, each with its `id`."""
        params = {"role": role}
        if repo is not None:
            params["repo"] = repo
        body = self._json("GET", "/v1/tasks", params=params)
        return body.get("tasks", body) if isinstance(body, dict) else body

    def make_tasks(self, repo: str, *, strategy: str = "removal", count: int = 1,
                   seed: int = 0, timeout_s: Optional[float] = None) -> Any:
        """Makes procedural bugs into the server's store (`POST /v1/tasks`)."""
        return self._json("POST", "/v1/tasks", json={
            "repo": repo, "strategy": strategy, "count": count, "seed": seed},
            timeout_s=timeout_s)

    def run_episode(self, request: Dict[str, Any], *,
                    timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Runs one episode (`POST /v1/episodes`) and returns the server's answer: `episode_id`,
        `status`, `reward`, `messages`, `turns`, `result`, `timing`. An `episode_id` is added
        when the request has none, so `cancel` can name it while it runs."""
        request = dict(request)
        request.setdefault("episode_id", new_episode_id())
        return self._json("POST", "/v1/episodes", json=request, timeout_s=timeout_s)

    def run_round(self, request: Dict[str, Any], *,
                  timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """One self-play round (`POST /v1/rounds`): trajectories with `group_id`, `role`, reward."""
        return self._json("POST", "/v1/rounds", json=request, timeout_s=timeout_s)

    def cancel(self, episode_id: str) -> Dict[str, Any]:
        """Cancels a running episode; its sandboxes are gone when this returns."""
        response = self._call("DELETE", f"/v1/episodes/{episode_id}")
        try:
            return response.json()
        except ValueError:
            return {}

    def metadata(self) -> Dict[str, Any]:
        return self._json("GET", "/metadata")

    def schema(self) -> Dict[str, Any]:
        return self._json("GET", "/schema")

    def mcp(self, method: str, params: Optional[Dict[str, Any]] = None,
            request_id: int = 1) -> Dict[str, Any]:
        """One JSON-RPC 2.0 call on `POST /mcp`; returns `result`, raises `ServerError` on `error`."""
        body = self._json("POST", "/mcp", json={
            "jsonrpc": "2.0", "method": method, "params": params or {}, "id": request_id})
        if "error" in body:
            err = body["error"] or {}
            raise ServerError(f"mcp {method}: {err.get('message')}", code=str(err.get("code")),
                              body=body)
        return body.get("result")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "EnvClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
