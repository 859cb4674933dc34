"""The `openai` engine: any OpenAI-compatible chat-completions endpoint (a vLLM server, a hosted judge).

It can only return text. Token ids are therefore NOT what the model produced: when a local `tokenizer` is
given, the returned text is re-tokenized with it (and the prompt is encoded with its chat template); without
one, token id lists are empty. `token_exact = False` says so, so callers that need exact ids (training data)
can refuse it. Use it for judging and evaluation, not to generate training trajectories.

Keys never live in config files: `api_key_env` names an environment variable, or `api_key` is a function that
returns the key (the flow layer passes one that reads the Prefect Secret block `api_key_secret` names; swirl
never imports Prefect). The key is read on the first request, kept in a private attribute, and scrubbed from
every message this module logs or raises.

Retries are bounded and only for transient failures: timeouts, connection errors, HTTP 429 and 5xx, with
exponential backoff (honouring `Retry-After` up to the cap). Other 4xx answers are the caller's mistake and
are raised at once as `OpenAIRequestError` (a ValueError, so orchestration does not retry them either).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from swirl.engines.base import Completion, Message, Prompt, Result, Sampling, encode_prompt, prompt_seeds
from swirl.engines.config import OpenAIEngineConfig

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletion
    from openai.types.chat.chat_completion import Choice
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


class OpenAIEngineError(RuntimeError):
    """A request failed after every retry (transient: the server was down, slow or overloaded)."""


class OpenAIRequestError(ValueError):
    """The server refused a request with a 4xx status other than 429: retrying cannot help; fix the
    request."""


def _resolve_key(env: str, provider: Callable[[], str] | None) -> str:
    """The API key from the provider or an environment variable; a placeholder for key-less servers."""
    if provider is not None:
        value = provider()
        if not value:
            raise OpenAIRequestError("api_key: the key provider returned an empty key; set the secret")
        return str(value)
    if env:
        value = os.environ.get(env, "")
        if not value:
            raise OpenAIRequestError(
                f"api_key_env: environment variable {env} is not set; export it, or set api_key_env to '' "
                "for a server that needs no key"
            )
        return value
    return "EMPTY"  # vLLM and most local servers accept any key


class OpenAIEngine:
    """Engine protocol over chat completions. See the module docstring for the token caveat and key handling.

    Prompts: chat messages are sent as they are; a text prompt is sent as one user message; token-id prompts
    are refused (chat endpoints take text). When the server says which stop string ended a completion (vLLM's
    `stop_reason`), it is appended to the text, as the local engines include it; otherwise `stop` is None.
    """

    name = "openai"
    token_exact = False

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        api_key: Callable[[], str] | None = None,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_tokens_param: str = "max_tokens",
        max_context: int | None = None,
    ):
        self.model = model
        self.max_context = max_context
        self.base_url = base_url
        self._key_env, self._key_provider = api_key_env, api_key
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer = tokenizer
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.max_retries, self.backoff_s, self.backoff_max_s = max_retries, backoff_s, backoff_max_s
        self.max_tokens_param = max_tokens_param
        self._key: str | None = None
        self._client: OpenAI | None = None
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent (including retries)
        self.retries = 0  # retries after transient failures

    def __repr__(self) -> str:
        return f"OpenAIEngine(model={self.model!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(cls, cfg: OpenAIEngineConfig, api_key: Callable[[], str] | None = None) -> OpenAIEngine:
        """`api_key`: returns the key; required when the config names a secret (`api_key_secret`)."""
        if cfg.api_key_secret and api_key is None:
            raise OpenAIRequestError(
                f"api_key_secret {cfg.api_key_secret!r} names a Prefect Secret block, which only a flow run "
                "resolves (tasks/engines.py); outside a flow, put the key in an environment variable and set "
                "api_key_env instead"
            )
        return cls(
            cfg.model,
            cfg.base_url,
            api_key_env=cfg.api_key_env,
            api_key=api_key,
            tokenizer=cfg.tokenizer,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s,
            backoff_max_s=cfg.backoff_max_s,
            max_tokens_param=cfg.max_tokens_param,
            max_context=cfg.max_context,
        )

    # ------------------------------------------------------------------------------------- plumbing
    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key and self._key != "EMPTY" else text

    def _get_client(self) -> OpenAI:
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                self._key = _resolve_key(self._key_env, self._key_provider)
                # The SDK's own retries are off: ours are bounded, logged and counted.
                self._client = OpenAI(
                    api_key=self._key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
                )
            return self._client

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * (2**attempt)) * random.uniform(0.5, 1.0)
        headers = getattr(getattr(err, "response", None), "headers", None)
        retry_after = headers.get("retry-after") if headers is not None else None
        if retry_after:
            try:
                delay = max(delay, min(self.backoff_max_s, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        return delay

    def _create(self, messages: list[Message], params: dict[str, Any], what: str) -> ChatCompletion:
        """One chat-completions call with bounded retries on transient failures only."""
        import openai

        client = self._get_client()
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.requests += 1
            try:
                return client.chat.completions.create(model=self.model, messages=messages, **params)
            except openai.APIStatusError as e:
                status = e.status_code
                if status != 429 and status < 500:
                    raise OpenAIRequestError(
                        f"{self.base_url}: {what} refused with HTTP {status} (not retried): "
                        f"{self._scrub(str(e))[:500]}. Check the model name, the key and the request "
                        "parameters."
                    ) from None
                err: Exception = e
                reason = f"HTTP {status}"
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                err, reason = e, ("timeout" if isinstance(e, openai.APITimeoutError) else "connection error")
            if attempt == self.max_retries:
                raise OpenAIEngineError(
                    f"{self.base_url}: {what} failed after {attempt + 1} attempts (last: {reason}: "
                    f"{self._scrub(str(err))[:300]}). Check that the server is up, or raise "
                    "timeout_s / max_retries."
                ) from None
            delay = self._delay(attempt, err)
            with self._lock:
                self.retries += 1
            log.warning(
                "%s: %s (attempt %d/%d); retrying in %.2f s",
                what,
                reason,
                attempt + 1,
                self.max_retries + 1,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------------- generate
    def _messages(self, prompt: Prompt) -> list[Message]:
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        prompt = list(prompt)
        if prompt and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
            return [{"role": m["role"], "content": m["content"]} for m in prompt]
        raise TypeError(
            "the openai engine takes chat messages or text; token-id prompts need the vllm or hf engine"
        )

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if self.tokenizer is None:
            return []
        if not isinstance(prompt, str) and not self.tokenizer.chat_template:
            return []
        return encode_prompt(self.tokenizer, prompt)

    def _completion(self, choice: Choice, sampling: Sampling) -> Completion:
        text = choice.message.content or ""
        stop = getattr(choice, "stop_reason", None)  # a vLLM server extension: the stop string that fired
        stop = stop if isinstance(stop, str) and stop in sampling.stop else None
        if stop and not text.endswith(stop):
            text += stop
        lps = None
        if sampling.logprobs and choice.logprobs is not None and choice.logprobs.content:
            lps = [float(t.logprob) for t in choice.logprobs.content]
        ids = (
            list(self.tokenizer.encode(text, add_special_tokens=False)) if self.tokenizer is not None else []
        )
        return Completion(
            token_ids=ids,
            text=text,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            stop=stop,
            logprobs=lps,
        )

    def _one(self, i: int, prompt: Prompt, sampling: Sampling, seed: int | None) -> Result:
        messages = self._messages(prompt)
        comps: list[Completion] = []
        for extra in range(sampling.n):  # servers that ignore `n` are topped up, at most n requests
            params: dict[str, Any] = {
                "n": sampling.n - len(comps),
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                self.max_tokens_param: sampling.max_tokens,
            }
            if sampling.stop:
                params["stop"] = list(sampling.stop)
            if seed is not None:
                params["seed"] = seed + extra * 1_000_003
            if sampling.logprobs:
                params["logprobs"] = True
            resp = self._create(messages, params, f"prompt {i}")
            comps += [self._completion(c, sampling) for c in sorted(resp.choices, key=lambda c: c.index)]
            if len(comps) >= sampling.n:
                break
        return Result(prompt_token_ids=self._prompt_ids(prompt), completions=comps[: sampling.n])

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        """One Result per prompt (in order); requests run `concurrency` at a time. Raises on the first
        failure."""
        if adapter is not None:
            raise ValueError(
                "the openai engine cannot apply a LoRA adapter per request; serve it and name it as model"
            )
        prompts = list(prompts)
        if not prompts:
            return []
        self._get_client()  # resolve the key once, before the threads start
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(prompts)), thread_name_prefix="openai"
        ) as pool:
            per_seed = prompt_seeds(sampling, len(prompts), seeds)
            futures = [pool.submit(self._one, i, p, sampling, per_seed[i]) for i, p in enumerate(prompts)]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
