"""`ssr serve` against the real `openai` Python package (the reference client).

Starts `ssr serve` on a free port with the embedded model and checks that the
official client can list models, create completions (text and token-id prompts,
with logprobs) and chat completions (with logprobs), and that errors come back
in OpenAI's shape. Run: `python3 -m pytest tests/reference/openai_client_check.py`.
Environment: SSR_BIN (the `ssr` binary), SSR_MODEL (the GGUF file).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

openai = pytest.importorskip("openai", reason="the `openai` package is not installed (pip install openai)")

ROOT = Path(__file__).resolve().parents[2]
SSR = os.environ.get("SSR_BIN", str(ROOT / "target" / "debug" / "ssr"))
MODEL = os.environ.get("SSR_MODEL", str(ROOT / ".models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.fixture(scope="module")
def server():
    if not Path(SSR).exists():
        pytest.skip(f"{SSR} is not built (cargo build)")
    if not Path(MODEL).exists():
        pytest.skip(f"{MODEL} is missing (just setup)")
    proc = subprocess.Popen(
        [SSR, "serve", "--model", MODEL, "--port", "0", "--json", "--model-id", "smollm2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("ssr serve did not start: " + proc.stderr.read())
    info = json.loads(line)
    client = openai.OpenAI(base_url=info["base_url"], api_key="unused", max_retries=0, timeout=120)
    yield client
    proc.terminate()
    proc.wait(timeout=30)


def test_models(server):
    ids = [m.id for m in server.models.list().data]
    assert ids == ["smollm2"]


def test_completion_with_logprobs(server):
    r = server.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=1)
    choice = r.choices[0]
    assert isinstance(choice.text, str) and choice.text
    assert choice.finish_reason in ("stop", "length")
    assert len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs) == r.usage.completion_tokens
    assert all(lp <= 0 for lp in choice.logprobs.token_logprobs)
    # Greedy decoding is deterministic: the same request gives the same text.
    again = server.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert again.choices[0].text == choice.text


def test_token_id_prompt_and_exact_ids(server):
    r = server.completions.create(
        model="smollm2",
        prompt=[1, 504, 3575, 282],
        max_tokens=4,
        temperature=0,
        logprobs=1,
        extra_body={"return_tokens_as_token_ids": True},
    )
    toks = r.choices[0].logprobs.tokens
    assert toks and all(t.startswith("token_id:") for t in toks)
    assert r.usage.prompt_tokens == 4


def test_chat_with_logprobs(server):
    r = server.chat.completions.create(
        model="smollm2",
        messages=[{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
        logprobs=True,
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert len(choice.logprobs.content) == r.usage.completion_tokens
    assert all(c.logprob <= 0 for c in choice.logprobs.content)


def test_errors_have_openai_shape(server):
    with pytest.raises(openai.BadRequestError) as e:
        server.completions.create(model="smollm2", prompt="x", max_tokens=4, stream=True)
    assert "stream" in str(e.value)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
