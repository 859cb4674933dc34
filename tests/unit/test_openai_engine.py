"""The openai engine against a real local HTTP server (127.0.0.1) that speaks chat completions and fails on
cue."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typing_extensions import Self

from swirl.engines.base import Sampling
from swirl.engines.config import OpenAIEngineConfig
from swirl.engines.openai import OpenAIEngine, OpenAIEngineError, OpenAIRequestError

KEY = "sk-test-SECRET-7f3a9c"

Fault = tuple  # ("status", code, {headers}) | ("sleep", seconds) | ("echo_key_401",)


def _last_user(body: dict[str, Any]) -> str:
    return next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")


class ChatServer:
    """A tiny OpenAI-compatible server: `reply(body) -> text` answers; `fault(body, nth) -> Fault | None`
    fails.

    `nth` counts the requests seen so far with the same last user message (1 = first), so a test can fail the
    first attempt of a prompt and let its retry through. Every request body is recorded in `requests`.
    """

    def __init__(
        self,
        reply: Callable[[dict], str] | None = None,
        fault: Callable[[dict, int], Fault | None] | None = None,
        vllm_stop_reason: bool = False,
    ):
        self.reply = reply or (lambda body: "echo: " + _last_user(body))
        self.fault = fault or (lambda body, nth: None)
        self.vllm_stop_reason = vllm_stop_reason
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()
        self._seen: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                    key = _last_user(body)
                    server._seen[key] = server._seen.get(key, 0) + 1
                    nth = server._seen[key]
                fault = server.fault(body, nth)
                try:
                    if fault and fault[0] == "sleep":
                        time.sleep(fault[1])
                    elif fault and fault[0] == "status":
                        return self._send(
                            fault[1],
                            {"error": {"message": f"injected {fault[1]}"}},
                            fault[2] if len(fault) > 2 else {},
                        )
                    elif fault and fault[0] == "echo_key_401":
                        auth = self.headers.get("Authorization", "")
                        return self._send(401, {"error": {"message": f"bad key {auth}"}})
                    self._send(200, server.completion(body))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for k in range(body.get("n") or 1):
            text = self.reply(body)
            if k:
                text += f" #{k}"
            choice: dict[str, Any] = {
                "index": k,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for s in body.get("stop") or []:
                if s in text:
                    choice["message"]["content"] = text[: text.index(s)]
                    if self.vllm_stop_reason:
                        choice["stop_reason"] = s
                    break
            if body.get("max_tokens") is not None and len(text.split()) > body["max_tokens"]:
                choice["message"]["content"] = " ".join(text.split()[: body["max_tokens"]])
                choice["finish_reason"] = "length"
            if body.get("logprobs"):
                words = choice["message"]["content"].split()
                choice["logprobs"] = {
                    "content": [
                        {"token": w, "logprob": -0.5, "bytes": None, "top_logprobs": []} for w in words
                    ]
                }
            choices.append(choice)
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": choices,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def key_env(monkeypatch) -> str:
    monkeypatch.setenv("SWIRL_TEST_JUDGE_KEY", KEY)
    return "SWIRL_TEST_JUDGE_KEY"


def _engine(server: ChatServer, key_env: str, **kw: Any) -> OpenAIEngine:
    kw = {
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_s": 0.01,
        "backoff_max_s": 0.05,
        "concurrency": 4,
        **kw,
    }
    return OpenAIEngine("judge-model", server.url, api_key_env=key_env, **kw)


def test_generate_in_order_with_n_seed_logprobs_and_key(key_env):
    with ChatServer() as srv:
        eng = _engine(srv, key_env)
        prompts = [[{"role": "user", "content": f"p{i}"}] for i in range(6)] + ["plain text"]
        res = eng.generate(
            prompts, Sampling(n=2, temperature=0.7, top_p=0.9, max_tokens=50, seed=5, logprobs=True)
        )
        assert [r.completions[0].text for r in res] == [f"echo: p{i}" for i in range(6)] + [
            "echo: plain text"
        ]
        assert all(len(r.completions) == 2 for r in res)
        assert res[0].completions[0].logprobs == [-0.5, -0.5]
        assert res[0].completions[0].token_ids == [] and res[0].prompt_token_ids == []  # no tokenizer: no ids
        bodies = sorted(srv.requests, key=lambda b: _last_user(b))
        assert {b["seed"] for b in bodies} == set(range(5, 12))  # prompt i gets seed + i
        assert all(
            b["n"] == 2 and b["temperature"] == 0.7 and b["top_p"] == 0.9 and b["max_tokens"] == 50
            for b in bodies
        )
        assert set(srv.auth) == {f"Bearer {KEY}"}
        assert eng.token_exact is False and eng.requests == 7 and eng.retries == 0
        eng.close()


def test_stop_strings_length_and_vllm_stop_reason(key_env):
    def reply(body):
        return "think then <search_query>x</search_query> more words"

    with ChatServer(reply=reply, vllm_stop_reason=True) as srv:
        eng = _engine(srv, key_env)
        c = eng.generate(["q"], Sampling(stop=("</search_query>",), max_tokens=50))[0].completions[0]
        assert c.text == "think then <search_query>x</search_query>" and c.stop == "</search_query>"
        assert c.finish_reason == "stop"
        c = eng.generate(["q"], Sampling(max_tokens=2))[0].completions[0]
        assert c.finish_reason == "length"
    with ChatServer(reply=reply) as srv:  # a plain OpenAI server does not say which stop fired
        c = _engine(srv, key_env).generate(["q"], Sampling(stop=("</search_query>",)))[0].completions[0]
        assert c.text == "think then <search_query>x" and c.stop is None


def test_retries_on_5xx_429_and_timeouts_then_succeeds(key_env):
    def fault(body, nth):
        msg = _last_user(body)
        if msg == "five" and nth <= 2:
            return ("status", 503)
        if msg == "rate" and nth == 1:
            return ("status", 429, {"Retry-After": "0"})
        if msg == "slow" and nth == 1:
            return ("sleep", 1.5)
        return None

    with ChatServer(fault=fault) as srv:
        eng = _engine(srv, key_env, timeout_s=0.5)
        res = eng.generate(["five", "rate", "slow", "fine"], Sampling())
        assert [r.completions[0].text for r in res] == [
            "echo: five",
            "echo: rate",
            "echo: slow",
            "echo: fine",
        ]
        assert eng.retries == 4 and eng.requests == 8
        counts = {m: sum(_last_user(b) == m for b in srv.requests) for m in ("five", "rate", "slow", "fine")}
        assert counts == {"five": 3, "rate": 2, "slow": 2, "fine": 1}


def test_gives_up_after_bounded_retries(key_env):
    with ChatServer(fault=lambda body, nth: ("status", 500)) as srv:
        eng = _engine(srv, key_env, max_retries=2)
        t0 = time.monotonic()
        with pytest.raises(OpenAIEngineError, match="after 3 attempts") as e:
            eng.generate(["x"], Sampling())
        assert time.monotonic() - t0 < 5
        assert len(srv.requests) == 3 and KEY not in str(e.value)


@pytest.mark.parametrize("code", [400, 401, 404, 422])
def test_never_retries_other_4xx(key_env, code):
    with ChatServer(fault=lambda body, nth: ("status", code)) as srv:
        eng = _engine(srv, key_env)
        with pytest.raises(OpenAIRequestError, match=f"HTTP {code}"):
            eng.generate(["x"], Sampling())
        assert len(srv.requests) == 1 and eng.retries == 0


def test_connection_refused_is_retried_then_raised(key_env):
    with ChatServer() as srv:
        url = srv.url
    eng = OpenAIEngine("m", url, api_key_env=key_env, timeout_s=0.5, max_retries=2, backoff_s=0.01)
    with pytest.raises(OpenAIEngineError, match="connection error"):
        eng.generate(["x"], Sampling())
    assert eng.retries == 2


def test_key_never_in_repr_logs_or_errors(key_env, caplog):
    caplog.set_level(logging.DEBUG)
    with ChatServer(
        fault=lambda body, nth: (
            ("echo_key_401",) if _last_user(body) == "leak" else (("status", 500) if nth == 1 else None)
        )
    ) as srv:
        eng = _engine(srv, key_env)
        eng.generate(["ok"], Sampling())  # one retry: logs a warning
        with pytest.raises(OpenAIRequestError) as e:
            eng.generate(["leak"], Sampling())
        assert "***" in str(e.value) and KEY not in str(e.value)
        assert e.value.__cause__ is None and e.value.__suppress_context__
        assert KEY not in repr(eng) and KEY not in str(
            vars(OpenAIEngineConfig(base_url=srv.url, model="m", api_key_env=key_env))
        )
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text


def test_missing_key_env_names_the_variable(monkeypatch):
    monkeypatch.delenv("SWIRL_NO_SUCH_KEY", raising=False)
    eng = OpenAIEngine("m", "http://127.0.0.1:9/v1", api_key_env="SWIRL_NO_SUCH_KEY")
    with pytest.raises(OpenAIRequestError, match="SWIRL_NO_SUCH_KEY is not set"):
        eng.generate(["x"], Sampling())


def test_no_key_for_local_servers():
    with ChatServer() as srv:
        eng = OpenAIEngine("m", srv.url, api_key_env="")
        assert eng.generate(["x"], Sampling())[0].completions[0].text == "echo: x"
        assert srv.auth == ["Bearer EMPTY"]


def test_key_from_prefect_secret_block_loaded_lazily(monkeypatch):
    from prefect.blocks import system

    loaded: list[str] = []

    class FakeSecret:
        def get(self) -> str:
            return KEY

    def load(name: str, *a: Any, **k: Any) -> FakeSecret:
        loaded.append(name)
        return FakeSecret()

    monkeypatch.setattr(system.Secret, "load", staticmethod(load))
    from tasks.engines import get_engine

    with ChatServer() as srv:
        eng = get_engine(OpenAIEngineConfig(base_url=srv.url, model="m", api_key_secret="judge-key"))
        assert loaded == []  # nothing resolved before the first request
        eng.generate(["x"], Sampling())
        assert loaded == ["judge-key"] and srv.auth == [f"Bearer {KEY}"]


def test_a_secret_block_outside_a_flow_is_refused_with_the_fix():
    from swirl.engines import make_engine

    with pytest.raises(ValueError, match="api_key_env"):
        make_engine(OpenAIEngineConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_secret="k"))


def test_config_refuses_a_key_in_place_of_a_variable_name_without_echoing_it():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        OpenAIEngineConfig(base_url="http://x/v1", model="m", api_key_env=KEY)
    assert "NAME of an environment variable" in str(e.value) and KEY not in str(e.value)


def test_retokenizes_with_a_local_tokenizer(tiny_model_dir, key_env):
    with ChatServer(reply=lambda body: "The answer is 42") as srv:
        eng = _engine(srv, key_env, tokenizer=tiny_model_dir)
        r = eng.generate([[{"role": "user", "content": "hi"}]], Sampling())[0]
        c = r.completions[0]
        assert c.token_ids == eng.tokenizer.encode("The answer is 42", add_special_tokens=False)
        assert eng.tokenizer.decode(c.token_ids) == "The answer is 42" and r.prompt_token_ids


def test_token_id_prompts_and_adapters_are_refused(key_env):
    eng = OpenAIEngine("m", "http://127.0.0.1:9/v1", api_key_env=key_env)
    with pytest.raises(TypeError, match="token-id prompts"):
        eng._messages([1, 2, 3])
    with pytest.raises(ValueError, match="adapter"):
        eng.generate(["x"], Sampling(), adapter="/some/lora")


def test_importing_swirl_judging_does_not_import_prefect_openai_or_swirl_config():
    """Light imports; and no swirl.config, which imports these configs into RunConfig (a cycle otherwise)."""
    code = (
        "import sys, swirl.engines.openai, swirl.judging, swirl.judging.process, swirl.judging.outcome, "
        "swirl.subtrajectories, swirl.table_io, swirl.stages.judge, swirl.stages.decompose, "
        "swirl.stages.filter; "
        "print(sorted(m for m in ('prefect', 'openai', 'torch', 'transformers', 'swirl.config') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
