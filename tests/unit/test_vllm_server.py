"""The OpenAI-compatible engine against vLLM's own OpenAI server (`vllm serve` on the tiny model, 127.0.0.1).

The server is a separate vLLM engine, so this module runs after the session's shared engine tests only by name
order; it starts the server, runs everything it needs, and stops it (one server for the module).
"""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from swirl.engines.base import Sampling
from swirl.system import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("vllm-serve") / "server.log", "w")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "SWIRL_TEST_KEY": "sk-test-not-secret"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            tiny_model_dir,
            "--served-model-name",
            "tiny",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            "float32",
            "--max-model-len",
            "1024",
            "--enforce-eager",
            "--no-enable-chunked-prefill",
            "--api-key",
            "sk-test-not-secret",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(2)
    else:
        proc.kill()
        pytest.fail(f"vllm serve did not become healthy in 300 s; see {log.name}")
    os.environ["SWIRL_TEST_KEY"] = "sk-test-not-secret"
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def engine(server, tiny_model_dir):
    from swirl.engines.openai import OpenAIEngine

    eng = OpenAIEngine(
        "tiny", server, api_key_env="SWIRL_TEST_KEY", tokenizer=tiny_model_dir, concurrency=4, timeout_s=60
    )
    yield eng
    eng.close()


PROMPTS = [[{"role": "user", "content": f"What is {i} times {i + 1}?"}] for i in range(4)]


def test_greedy_text_matches_local_engine(engine, hf_engine):
    s = Sampling(max_tokens=16, logprobs=True)
    remote, local = engine.generate(PROMPTS, s), hf_engine.generate(PROMPTS, s)
    for r, loc in zip(remote, local, strict=False):
        assert r.completions[0].text == loc.completions[0].text
        assert r.prompt_token_ids == loc.prompt_token_ids
        assert len(r.completions[0].logprobs) == len(loc.completions[0].token_ids)
    assert "sk-test" not in repr(engine)


def test_rollout_through_the_server(engine):
    from swirl.protocol import MATH_PROMPT, render_prompt
    from swirl.rollout import ChatSegments, RolloutSettings, rollout, start_trajectories

    qs = [{"question_id": f"q{i}", "question": f"What is {i} + 1?", "task": "math"} for i in range(3)]
    trajs = start_trajectories(
        qs,
        2,
        lambda q: [{"role": "user", "content": render_prompt(MATH_PROMPT, q["question"], 3)}],
        ChatSegments(engine.tokenizer),
    )
    rollout(
        engine,
        trajs,
        {"math": lambda e: f"{e} -> 1"},
        RolloutSettings(max_steps=3, max_tokens_per_step=24, max_context=1024, seed=1),
    )
    assert len(trajs) == 6
    for t in trajs:
        assert t.stop_reason in ("answer", "max_steps", "context_limit") and len(t.action_spans) >= 1
        for (a, b), m in zip(t.action_spans, t.messages[1::2], strict=False):
            assert engine.tokenizer.decode(t.token_ids[a:b], skip_special_tokens=True) == m["content"]
