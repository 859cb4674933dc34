"""Inference engines: one Protocol (`Engine`) and one factory, `make_engine`, for every kind and role.

A role (the policy, the judge, the training sampler) names an `EngineSpec` in the config; whoever runs a stage
turns it into an engine with `make_engine` (or the flow layer's cached `tasks.engines.get_engine`, which calls
it). Heavy imports (vLLM, transformers, the OpenAI SDK) happen inside the factory, not at import time.
"""

from __future__ import annotations

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

        folder = merge_adapter(cfg.model, cfg.adapter, merged_folder(cfg.model, cfg.adapter))
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


class EnginePool:
    """Engines built on demand, one per config (a policy that judges itself shares its engine), all closed by
    `close()`: what a stage or a training run uses when its caller gave it no engines."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}

    def get(self, cfg: EngineSpec) -> Engine:
        key = cfg.model_dump_json()
        if key not in self._engines:
            self._engines[key] = make_engine(cfg)
        return self._engines[key]

    def close(self) -> None:
        for eng in self._engines.values():
            eng.close()
        self._engines.clear()
