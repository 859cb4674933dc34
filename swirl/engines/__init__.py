"""Inference engines: one Protocol (`Engine`) and one factory, `make_engine`, for every kind and role.

A role (the policy, the judge, the training sampler) names an `EngineSpec` in the config; whoever runs a stage
turns it into an engine with `make_engine`, or shares engines through an `EnginePool` (one key rule,
`pool_key`; the flow layer's `tasks.engines.get_engine` is one pool for the whole flow run). Heavy imports
(vLLM, transformers, the OpenAI SDK) happen inside the factory, not at import time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from swirl.engines.base import Completion, Engine, Prompt, Result, Sampling, encode_prompt
from swirl.engines.config import EngineConfig, EngineSpec, OpenAIEngineConfig

__all__ = [
    "Completion",
    "Engine",
    "EngineConfig",
    "EngineSpec",
    "OpenAIEngineConfig",
    "Prompt",
    "Result",
    "Sampling",
    "EnginePool",
    "encode_prompt",
    "make_engine",
    "merges_adapter",
    "pool_key",
]


def make_engine(cfg: EngineSpec, api_key: Callable[[], str] | None = None) -> Engine:
    """Build the engine a config names: vllm, hf (a merged-adapter copy when `merge_adapter`), or openai.

    `api_key`: returns an OpenAI-compatible endpoint's key, for configs that name a secret store entry
    (`api_key_secret`) rather than an environment variable."""
    if isinstance(cfg, OpenAIEngineConfig):
        from swirl.engines.openai import OpenAIEngine

        return OpenAIEngine.from_config(cfg, api_key)
    if cfg.merge_adapter and cfg.adapter:
        from swirl.engines.merged import MergedAdapterEngine, merge_adapter, merged_folder
        from swirl.store import local_copy

        folder = merge_adapter(cfg.model, local_copy(cfg.adapter), merged_folder(cfg.model, cfg.adapter))
        try:
            inner = make_engine(
                cfg.model_copy(
                    update={"model": folder, "adapter": None, "merge_adapter": False, "enable_lora": False}
                )
            )
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        return MergedAdapterEngine(inner, cfg.adapter, folder)
    if cfg.kind == "vllm":
        from swirl.engines.vllm import VLLMEngine

        return VLLMEngine(
            cfg.model,
            dtype=cfg.dtype,
            max_model_len=cfg.max_model_len,
            seed=cfg.seed,
            enable_lora=cfg.enable_lora,
            max_lora_rank=cfg.max_lora_rank,
            max_loras=cfg.max_loras,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            cpu_kvcache_gb=cfg.cpu_kvcache_gb,
            enforce_eager=cfg.enforce_eager,
            block_size=cfg.block_size,
            max_num_seqs=cfg.max_num_seqs,
            cpu_threads=cfg.cpu_threads,
        )
    from swirl.engines.hf import HFEngine

    return HFEngine(cfg.model, dtype=cfg.dtype, batch_size=cfg.hf_batch_size, seed=cfg.seed)


def merges_adapter(cfg: EngineSpec) -> bool:
    """Whether the config's engine serves its adapter merged into a copy of the weights."""
    return isinstance(cfg, EngineConfig) and bool(cfg.merge_adapter and cfg.adapter)


def pool_key(cfg: EngineSpec) -> str:
    """What makes two configs one engine in a pool: the whole config less the adapter, because vllm and hf
    engines take the adapter per request (every caller names it in `generate`), so the policy with and
    without its adapter, or a policy that judges itself, share one engine. A merged adapter is part of the
    weights (a different model), so it stays in the key."""
    exclude = {"adapter"} if isinstance(cfg, EngineConfig) and not merges_adapter(cfg) else None
    return json.dumps(cfg.model_dump(mode="json", exclude=exclude), sort_keys=True)


class EnginePool:
    """Engines built on demand and shared by `pool_key`, all closed by `close()`: what a stage or a training
    run uses when its caller gave it no engines, and (in tasks/engines.py) the flow run's shared engines.

    At most one merged-adapter engine is kept: each holds a copy of the weights and its own KV cache, so a new
    one closes the last. `build`: the factory (tests pass scripted engines). `read_secret`: resolves the
    secret an OpenAI-compatible config names (`api_key_secret`) to its key, on the engine's first request;
    the flow layer passes one that reads Prefect Secret blocks. Thread-safe."""

    def __init__(
        self,
        build: Callable[[EngineSpec, Callable[[], str] | None], Engine] = make_engine,
        read_secret: Callable[[str], str] | None = None,
    ) -> None:
        self._build, self._read_secret = build, read_secret
        self._engines: dict[str, Engine] = {}
        self._merged: str | None = None  # the key of the one merged-adapter engine kept
        self._lock = threading.Lock()

    def get(self, cfg: EngineSpec) -> Engine:
        key = pool_key(cfg)
        with self._lock:
            if key not in self._engines:
                if merges_adapter(cfg) and self._merged is not None:
                    self._engines.pop(self._merged).close()
                    self._merged = None
                self._engines[key] = self._build(cfg, self._api_key(cfg))
                if merges_adapter(cfg):
                    self._merged = key
            return self._engines[key]

    def _api_key(self, cfg: EngineSpec) -> Callable[[], str] | None:
        if self._read_secret is None or not isinstance(cfg, OpenAIEngineConfig) or not cfg.api_key_secret:
            return None
        read, name = self._read_secret, cfg.api_key_secret
        return lambda: read(name)

    def close(self) -> None:
        with self._lock:
            engines, self._engines, self._merged = list(self._engines.values()), {}, None
        for eng in engines:
            eng.close()
