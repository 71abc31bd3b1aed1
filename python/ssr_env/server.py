"""A local `ssr env serve` child process: started, waited for, stopped.

`SsrServer` runs `ssr env serve --port 0 --json --slots N [--token T] --repo ...`, reads the
`{"base_url":..., "slots":N}` line the server prints once it listens, and gives an `Endpoint`.
The child gets `PR_SET_PDEATHSIG` (through `setpriv`): when the thread that started it dies for
any reason (a Ray actor killed, its node removed, a test runner crashed) the kernel sends the
server SIGTERM, so no server outlives its owner; the server in turn tears down its sandboxes.

Does not own: where it runs (`ray_nodes` places one per Ray node), the server's behaviour.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .client import Endpoint
from .errors import SsrEnvError

_PR_SET_PDEATHSIG = 1


class ServerStartError(SsrEnvError):
    """`ssr env serve` exited or stayed silent before printing its listening line."""


def _die_with_parent(parent_pid: int) -> None:
    """`preexec_fn` fallback where `setpriv` is missing: SIGTERM when the parent dies.

    Python code between fork and exec can deadlock in a multi-threaded parent (a Ray worker
    is one), which is why `setpriv --pdeathsig` is preferred."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died between fork and prctl: then no signal would ever come.
    if os.getppid() != parent_pid:
        os._exit(1)


def _with_death_signal(cmd: List[str]) -> Tuple[List[str], Any]:
    """`cmd` made to get SIGTERM when the thread that starts it dies: (argv, preexec_fn).

    `setpriv --pdeathsig` (util-linux) sets it with no Python code between fork and exec; the
    signal survives the exec into `ssr`. The death signal follows the forking thread."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--"] + cmd, None
    parent = os.getpid()
    return cmd, lambda: _die_with_parent(parent)


def serve_command(binary: str, repos: Sequence[str], *, slots: int,
                  host: str = "127.0.0.1", store: Optional[str] = None,
                  extra_args: Sequence[str] = ()) -> List[str]:
    """The `ssr env serve` command line for one node (the token goes in its environment)."""
    cmd = [binary, "env", "serve", "--host", host, "--port", "0", "--json",
           "--slots", str(slots)]
    for repo in repos:
        cmd += ["--repo", repo]
    if store:
        cmd += ["--store", store]
    return cmd + list(extra_args)


class SsrServer:
    """A started `ssr env serve` child process and where it listens. Plain Python: the Ray
    actor (`ray_nodes.SsrNode`) wraps it, and it can be used without Ray on one machine.

    Create it on a thread that lives as long as the server should: the death signal follows
    the thread that started the child, not the process."""

    def __init__(self, binary: str, repos: Sequence[str], *, slots: int,
                 host: str = "127.0.0.1", store: Optional[str] = None,
                 extra_args: Sequence[str] = (), startup_timeout_s: float = 120.0,
                 log_path: Optional[str] = None, node: str = "",
                 env: Optional[Dict[str, str]] = None, token: Optional[str] = "auto") -> None:
        #: "auto": a fresh random token (the default: every server its own); None: no token,
        #: which the server allows on loopback only.
        self.token = secrets.token_hex(16) if token == "auto" else token
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="ssr-env-serve-", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        cmd = serve_command(binary, repos, slots=slots, host=host, store=store,
                            extra_args=extra_args)
        # The token travels as SSR_ENV_TOKEN (the server's `--token`), not on the command line,
        # where every user of the node could read it in /proc.
        env = dict(os.environ if env is None else env)
        env.pop("SSR_ENV_TOKEN", None)
        if self.token:
            env["SSR_ENV_TOKEN"] = self.token
        # stdout and stderr go to a file, never a pipe: nobody drains a pipe after start-up, and
        # a full pipe would block the server.
        argv, preexec = _with_death_signal(cmd)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=preexec, env=env)
        info = self._wait_listening(startup_timeout_s)
        self.endpoint = Endpoint(info["base_url"].rstrip("/"), self.token,
                                 int(info.get("slots", slots)), node)

    def _wait_listening(self, timeout_s: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as log:
                for line in log:
                    line = line.strip()
                    if line.startswith(b"{"):
                        try:
                            info = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(info, dict) and "base_url" in info:
                            return info
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"ssr env serve exited with {self.proc.returncode}: {self.log_tail()}")
            time.sleep(0.05)
        self.stop()
        raise ServerStartError(f"ssr env serve did not listen within {timeout_s}s: "
                               f"{self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            with open(self.log_path, "rb") as log:
                return log.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> Optional[int]:
        """SIGTERM (the server cancels its episodes and removes their sandboxes), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
