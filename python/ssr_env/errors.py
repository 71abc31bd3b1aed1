"""The typed errors every part of `ssr_env` raises.

One module owns them so the HTTP client, the WebSocket session and the dispatcher classify a
failure the same way. The dispatcher's decisions rest on three classes:

- `CapacityReached`: the server is full (HTTP 429 or the OpenEnv code `CAPACITY_REACHED`);
  try again later or on another node. Nothing ran.
- `NodeUnreachable`: the connection was refused, reset or closed before an answer came; the
  node (or its server) is gone. The episode may have started there but has no result; run it
  elsewhere.
- `ServerError`: the server answered with an error (bad request, unknown task, ...); retrying
  would give the same answer, so it is not retried.
"""

from __future__ import annotations

from typing import Any, Optional


class SsrEnvError(Exception):
    """Base of every error raised by `ssr_env`."""


class ServerError(SsrEnvError):
    """The server answered with an error: an HTTP status >= 400 or an OpenEnv error frame."""

    def __init__(self, message: str, *, status: Optional[int] = None, code: Optional[str] = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"code {self.code}")
        return " | ".join(parts)


class CapacityReached(ServerError):
    """Every slot of the server is busy (HTTP 429 / `CAPACITY_REACHED`); nothing was started."""


class NodeUnreachable(SsrEnvError):
    """No answer: connection refused, reset or closed mid-request. The node or server is gone."""

    def __init__(self, base_url: str, cause: BaseException) -> None:
        super().__init__(f"{base_url}: {type(cause).__name__}: {cause}")
        self.base_url = base_url
        self.cause = cause


class NoLiveNodes(SsrEnvError):
    """The dispatcher has no node left that answers."""


class ProtocolError(SsrEnvError):
    """The server's answer does not have the documented shape (a bug on one side)."""
