"""OpenEnv's protocol on `ssr env serve`, driven by the real client from PyPI
(`openenv-core`'s `GenericEnvClient`), not an imitation of it."""

from __future__ import annotations

import pytest
import requests
from openenv.core import GenericEnvClient

import turns
from conftest import REPO
from ssr_env import Session
from ssr_env.server import SsrServer


def test_generic_client_plays_a_solver_episode_over_ws(server, bug):
    url = server.endpoint.base_url
    with GenericEnvClient(base_url=url, message_timeout_s=120).sync() as env:
        result = env.reset(role="solver", repo=REPO, task_id=bug, seed=3)
        assert not result.done
        observation = result.observation
        assert observation["messages"], observation
        assert observation["tools"], observation
        policy = turns.Replay(turns.SOLVER_FIX)
        steps = 0
        while not result.done:
            result = env.step(policy(result))
            steps += 1
            assert steps <= len(turns.SOLVER_FIX)
        assert result.reward == 1.0, result
        state = env.state()
        assert isinstance(state, dict)


def test_generic_client_sees_a_failed_fix_as_minus_one(server, bug):
    with GenericEnvClient(base_url=server.endpoint.base_url, message_timeout_s=120).sync() as env:
        result = env.reset(role="solver", repo=REPO, task_id=bug, seed=4)
        policy = turns.Replay(turns.SOLVER_IDLE)
        while not result.done:
            result = env.step(policy(result))
        assert result.reward == -1.0


def test_metadata_and_schema_have_openenv_shapes(server):
    url = server.endpoint.base_url
    metadata = requests.get(f"{url}/metadata", timeout=10).json()
    assert metadata["name"] and "description" in metadata
    schema = requests.get(f"{url}/schema", timeout=10).json()
    assert set(schema) >= {"action", "observation", "state"}


def test_ssr_env_session_speaks_the_same_protocol(server, bug):
    with Session(server.endpoint, timeout_s=120) as session:
        result = session.reset(role="solver", repo=REPO, task_id=bug, seed=5)
        for text in turns.SOLVER_FIX:
            assert not result.done
            result = session.step(text)
        assert result.done and result.reward == 1.0


def test_generic_client_with_token_and_over_capacity(ssr_bin, repo_dir, tmp_path):
    """A server with a token and one slot: openenv-core's client carries the token as URL
    userinfo (HTTP Basic, the only credential it can send); without it the upgrade is refused;
    a second session over capacity is told `CAPACITY_REACHED`."""
    srv = SsrServer(ssr_bin, [repo_dir], slots=1, store=str(tmp_path / "store"))
    try:
        assert srv.token
        host = srv.endpoint.base_url[len("http://"):]
        with_token = f"http://ssr:{srv.token}@{host}"
        with GenericEnvClient(base_url=with_token, message_timeout_s=120).sync() as env:
            # An injector episode needs no task: this store is empty.
            first = env.reset(role="injector", repo=REPO, seed=6)
            assert not first.done and first.observation["messages"]
            with pytest.raises(RuntimeError, match="CAPACITY_REACHED"):
                with GenericEnvClient(base_url=with_token).sync() as other:
                    other.reset(role="injector", repo=REPO, seed=7)
        with pytest.raises(ConnectionError, match="401"):
            with GenericEnvClient(base_url=srv.endpoint.base_url).sync() as env:
                env.reset(role="injector", repo=REPO)
    finally:
        srv.stop()
