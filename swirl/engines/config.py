"""Engine configs: which engine serves a model, and what about it decides its outputs.

`EngineConfig` is a local engine (vllm, hf); `OpenAIEngineConfig` an OpenAI-compatible endpoint. `EngineSpec`
is either: what a role (policy, judge, sampler) names, and what `swirl.engines.make_engine` builds.

Identities feed stage versions: `engine_identity` is what makes an engine's outputs what they are (model,
adapter, dtype), not where or how fast it runs; `serving_identity` adds how the policy is served where that
changes the numbers; `model_fingerprint` names local model and adapter folders by their files.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from swirl.sections import Section

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REDACTED = "<redacted: this looks like a secret, not an environment variable name>"


class EngineConfig(Section):
    """A local engine (vLLM or transformers) running in this process."""

    kind: Literal["vllm", "hf"] = Field(
        "vllm", description="Inference engine: vllm (production) or hf (fallback)."
    )
    model: str = Field(description="Model folder or hub id (hub ids need network).")
    adapter: str | None = Field(
        None, description="LoRA adapter folder (peft format) applied to every request."
    )
    merge_adapter: bool = Field(
        False,
        description="Serve `adapter` merged into a copy of the weights (made at engine start, removed at "
        "close) instead of as a LoRA: vLLM's LoRA path on a CPU decodes several times slower "
        "(bench/cpu_engine.py). One engine per adapter; not for sampling from an adapter that is being "
        "trained (train.objective swirl).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype. auto = bfloat16 on GPU, float32 on CPU."
    )
    max_model_len: int = Field(4096, ge=64, description="Context limit (prompt + generated tokens).")
    seed: int = Field(0, description="Engine seed (vLLM) / torch seed (hf).")
    enable_lora: bool = Field(
        True, description="Start vLLM with LoRA support so adapters can be swapped per request."
    )
    max_lora_rank: int = Field(64, ge=1, description="Largest LoRA rank vLLM accepts.")
    max_loras: int = Field(2, ge=1, description="LoRA adapters vLLM keeps resident at once.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="vLLM GPU memory fraction (GPU only)."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallel degree (GPU only).")
    cpu_kvcache_gb: float = Field(1.0, gt=0, description="vLLM KV-cache size in GiB on CPU machines.")
    enforce_eager: bool = Field(
        True, description="Skip CUDA-graph / torch.compile capture (faster start-up)."
    )
    hf_batch_size: int = Field(16, ge=1, description="Prompts per forward batch in the hf engine.")
    block_size: int | None = Field(
        None,
        ge=1,
        description="vLLM KV-cache block size (prefix caching reuses whole blocks). Empty: 32 on CPU "
        "machines, vLLM's default on GPUs.",
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="vLLM's limit on sequences decoded at once. Empty: vLLM's default."
    )
    cpu_threads: str | None = Field(
        None,
        description="vLLM on CPU: the cores its worker's threads bind to, in vLLM's list syntax ('0-3', "
        "'0,2') or `all`. Empty: vLLM's automatic binding, which keeps one core for the scheduler process "
        "(on a 2-core machine, half of it; bench/cpu_engine.py compares them).",
    )


class OpenAIEngineConfig(Section):
    """An OpenAI-compatible endpoint used as an engine (typically the judge)."""

    kind: Literal["openai"] = Field(
        "openai", description="Engine kind; `openai` = an OpenAI-compatible HTTP endpoint."
    )
    base_url: str = Field(
        description="Endpoint base URL including /v1, e.g. http://127.0.0.1:8000/v1 for a vLLM server."
    )
    model: str = Field(description="Model name the server expects in requests.")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Name of the environment variable holding the API key (never the key itself). Empty: no "
        "key (local servers), unless api_key_secret is set.",
    )
    api_key_secret: str | None = Field(
        None,
        description="Name of a Prefect Secret block holding the key; used instead of api_key_env when set. "
        "The flow layer resolves it (tasks/engines.py); outside a flow use api_key_env.",
    )
    tokenizer: str | None = Field(
        None,
        description="Local tokenizer folder (or hub id) used to re-tokenize returned text; without one, "
        "token id lists are empty. Re-tokenized ids are never exact (token_exact = False).",
    )
    concurrency: int = Field(8, ge=1, le=512, description="Requests in flight at once (a thread pool).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(
        4, ge=0, le=20, description="Retries per request on timeouts, connection errors, HTTP 429 and 5xx."
    )
    backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles on each retry (with jitter).")
    backoff_max_s: float = Field(30.0, ge=0, description="Cap of one retry delay (also caps Retry-After).")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description="Request field that carries Sampling.max_tokens: max_tokens (vLLM, most servers) or "
        "max_completion_tokens (newer OpenAI models).",
    )
    max_context: int | None = Field(
        None,
        ge=2,
        description="The served model's context limit in tokens, if known. With a tokenizer, prompts at or "
        "over it are skipped by the callers (the judge records UNKNOWN) instead of failing on the server.",
    )

    @model_validator(mode="before")
    @classmethod
    def _redact(cls, data: Any) -> Any:
        """A key pasted where a variable name belongs must not be echoed back in the validation error."""
        if isinstance(data, dict) and isinstance(data.get("api_key_env"), str):
            v = data["api_key_env"]
            if v and not _ENV_NAME.match(v):
                data = {**data, "api_key_env": _REDACTED}
        return data

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if v == _REDACTED:
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, _), not a key: "
                "export the key (e.g. `export OPENAI_API_KEY=...`) and write `api_key_env: OPENAI_API_KEY`"
            )
        return v


EngineSpec = EngineConfig | OpenAIEngineConfig


def engine_identity(cfg: EngineSpec) -> dict[str, Any]:
    """What makes an engine's outputs what they are (model, weights dtype, adapter), not where or how fast."""
    if isinstance(cfg, OpenAIEngineConfig):
        return {"kind": cfg.kind, "model": cfg.model}
    return {"kind": cfg.kind, "model": cfg.model, "adapter": cfg.adapter, "dtype": cfg.dtype}


def serving_identity(policy: EngineConfig) -> str:
    """How the policy is served, where it changes the numbers: the engine kind, and a merged adapter (merged
    weights round differently from a LoRA applied at run time)."""
    return policy.kind + ("+merged" if policy.merge_adapter and policy.adapter else "")


def model_fingerprint(model: str, adapter: str | None) -> str:
    """Identity of a policy's weights: the name, and for local folders the sizes and times of their files."""

    def folder(path: str) -> str:
        if not os.path.isdir(path):
            return path
        parts = []
        for n in sorted(os.listdir(path)):
            p = os.path.join(path, n)
            if os.path.isfile(p):
                st = os.stat(p)
                parts.append(f"{n}:{st.st_size}:{st.st_mtime_ns}")
        return f"{os.path.abspath(path)}[{','.join(parts)}]"

    return folder(model) + ("|" + folder(adapter) if adapter else "")
