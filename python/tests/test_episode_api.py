"""The episode API through `ssr_env.EnvClient` against the real `ssr env serve`."""

from __future__ import annotations

import threading
import time

import pytest

import turns
from conftest import REPO, ROOT, wait_no_busy_sandboxes
from ssr_env import EnvClient, ServerError, new_episode_id


def test_health_counts_slots(server):
    with EnvClient(server.endpoint) as client:
        health = client.health()
    assert health["status"] == "healthy"
    assert health["slots"] == 2
    assert 0 <= health["slots_free"] <= 2


def test_tasks_list_the_injected_bug(server, bug):
    with EnvClient(server.endpoint) as client:
        tasks = {t["task_id"]: t for t in client.tasks(REPO)}
    assert bug in tasks, tasks
    assert tasks[bug]["fail_to_pass"], tasks[bug]


def test_scripted_solver_fix_scores_plus_one_with_turns(server, bug):
    with EnvClient(server.endpoint) as client:
        answer = client.run_episode({
            "role": "solver", "repo": REPO, "task_id": bug, "seed": 1,
            "script": turns.script("solver", turns.SOLVER_FIX)})
    assert answer["status"] == "ok", answer.get("error")
    assert answer["reward"] == 1.0, answer["result"]
    assert len(answer["turns"]) == len(turns.SOLVER_FIX)
    for turn in answer["turns"]:
        assert set(turn) >= {"prompt_token_ids", "completion_token_ids", "logprobs",
                             "finish_reason", "exact_tokens", "policy_version"}
    assert answer["timing"]["env_s"] > 0
    assert any(m["role"] == "assistant" for m in answer["messages"])


def test_scripted_solver_idle_scores_minus_one(server, bug):
    with EnvClient(server.endpoint) as client:
        answer = client.run_episode({
            "role": "solver", "repo": REPO, "task_id": bug, "seed": 2,
            "script": turns.script("solver", turns.SOLVER_IDLE)})
    assert answer["status"] == "ok", answer.get("error")
    assert answer["reward"] == -1.0


@pytest.mark.parametrize("request_, status, code", [
    ({"role": "solver", "repo": "no-such-repo", "task_id": "x"}, 404, "UNKNOWN_REPO"),
    ({"role": "solver", "repo": "../etc", "task_id": "x"}, 400, "PATH_NOT_ALLOWED"),
    ({"role": "solver", "repo": REPO, "task_id": "no-such-bug"}, 404, "UNKNOWN_TASK"),
])
def test_bad_requests_are_typed_errors(server, request_, status, code):
    request = dict(request_, script=turns.script("solver", turns.SOLVER_IDLE))
    with EnvClient(server.endpoint) as client:
        with pytest.raises(ServerError) as err:
            client.run_episode(request)
        assert (err.value.status, err.value.code) == (status, code), err.value
        assert client.health()["status"] == "healthy"


def test_cancel_ends_a_running_episode_and_its_sandbox(server, bug):
    episode_id = new_episode_id()
    answers = {}

    def run():
        with EnvClient(server.endpoint) as client:
            answers["a"] = client.run_episode({
                "role": "solver", "repo": REPO, "task_id": bug, "episode_id": episode_id,
                "script": turns.script("solver", turns.slow(turns.SOLVER_FIX, 60))})

    thread = threading.Thread(target=run)
    thread.start()
    with EnvClient(server.endpoint) as client:
        deadline = time.monotonic() + 30
        while client.health()["episodes_running"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # into the `sleep 60` tool call
        started = time.monotonic()
        client.cancel(episode_id)
    thread.join(30)
    assert not thread.is_alive(), "the episode's POST did not answer after DELETE"
    assert answers["a"]["status"] == "cancelled", answers["a"]
    assert time.monotonic() - started < 15
    # The server stays and may keep idle launchers; the cancelled command's sandbox may not.
    assert wait_no_busy_sandboxes(10) == []


def test_round_groups_roles_and_the_spec_injector_reward(server):
    """`POST /v1/rounds` with G = 2 scripted solvers, one fixing and one idle: solve rate 1/2,
    so the injector's reward is 1 - (1 + 0.8) * 0.5 = 0.1 (SSR_SPEC.md section 7)."""
    with EnvClient(server.endpoint) as client:
        answer = client.run_round({
            "repo": REPO, "G": 2, "seed": 11,
            "script": {"injector": [turns.INJECTOR],
                       "solver": [turns.SOLVER_FIX, turns.SOLVER_IDLE]}})
    assert (answer.get("solved"), answer.get("attempts")) == (1, 2), {
        k: v for k, v in answer.items() if k != "trajectories"}
    by_role = {}
    for t in answer["trajectories"]:
        by_role.setdefault(t["role"], []).append(t)
    roles = {r: len(ts) for r, ts in by_role.items()}
    assert roles == {"injector": 1, "solver": 2}, [
        {k: t.get(k) for k in ("role", "group_id", "status", "reward", "error")}
        for t in answer["trajectories"]]
    assert by_role["injector"][0]["reward"] == pytest.approx(0.1)
    assert sorted(t["reward"] for t in by_role["solver"]) == [-1.0, 1.0]
    solver_groups = {t["group_id"] for t in by_role["solver"]}
    assert len(solver_groups) == 1
    assert by_role["injector"][0]["group_id"] not in solver_groups



def to_verl(ep):
    """python/README.md's worked verl conversion, verbatim in behaviour."""
    assert ep["status"] in ("ok", "truncated") and all(t["exact_tokens"] for t in ep["turns"])
    prompt_ids = ep["turns"][0]["prompt_token_ids"]
    ids, mask, lps, seen = [], [], [], list(prompt_ids)
    for t in ep["turns"]:
        p = t["prompt_token_ids"]
        assert p[:len(seen)] == seen
        tool = p[len(seen):]
        ids += tool
        mask += [0] * len(tool)
        lps += [0.0] * len(tool)
        c = t["completion_token_ids"]
        ids += c
        mask += [1] * len(c)
        lps += t["logprobs"] or [0.0] * len(c)
        seen = p + c
    return dict(prompt_ids=prompt_ids, response_ids=ids, response_mask=mask,
                response_logprobs=lps, reward_score=ep["reward"], num_turns=len(ep["turns"]))


def test_readme_verl_conversion_on_a_real_episode(server, bug):
    if not (ROOT / ".models/SmolLM2-135M-Instruct.Q4_1.gguf").exists():
        pytest.skip("no tokenizer (.models/, `just setup`): the server records no token ids")
    with EnvClient(server.endpoint) as client:
        ep = client.run_episode({"role": "solver", "repo": REPO, "task_id": bug, "seed": 12,
                                 "script": turns.script("solver", turns.SOLVER_FIX)})
    row = to_verl(ep)
    assert row["prompt_ids"] and row["num_turns"] == len(turns.SOLVER_FIX)
    assert len(row["response_ids"]) == len(row["response_mask"]) == len(row["response_logprobs"])
    assert 0 in row["response_mask"] and 1 in row["response_mask"]  # tool output and model text
    assert row["reward_score"] == 1.0
