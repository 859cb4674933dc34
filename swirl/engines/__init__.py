"""Inference engines: one Protocol (`Engine`), implementations chosen by config (DESIGN.md §4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swirl.engines.base import Completion, Engine, Prompt, Result, Sampling, encode_prompt

if TYPE_CHECKING:
    from swirl.config import EngineConfig

__all__ = ["Completion", "Engine", "Prompt", "Result", "Sampling", "encode_prompt", "make_engine"]


def make_engine(cfg: EngineConfig) -> Engine:
    """Build the engine a config names (heavy imports happen here, not at import time)."""
    if getattr(cfg, "merge_adapter", False) and cfg.adapter:
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
    if cfg.kind == "hf":
        from swirl.engines.hf import HFEngine

        return HFEngine(cfg.model, dtype=cfg.dtype, batch_size=cfg.hf_batch_size, seed=cfg.seed)
    raise ValueError(f"unknown engine kind {cfg.kind!r}; choose vllm or hf")
