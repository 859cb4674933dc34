"""Serve a LoRA adapter merged into a copy of the base weights (`EngineConfig.merge_adapter`).

vLLM's LoRA path on a CPU decodes several times slower than the plain model (the adapter's matmuls run as
separate, unfused ops at every layer), so for evaluating or sampling a fixed adapter it is faster to merge it
into the weights once (W + B·A·alpha/r, peft's `merge_and_unload`) and serve the merged copy as an ordinary
model. The merged engine serves exactly that one adapter: a request for another adapter, or for the base
model, is an error (it cannot be answered by these weights).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence

from swirl.engines.base import Engine, Prompt, Result, Sampling

_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def merge_adapter(model: str, adapter: str, out: str) -> str:
    """Write `model` with `adapter` merged into its weights to the folder `out` (tokenizer files copied
    unchanged, so the merged model tokenizes exactly as the base). Returns `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    os.makedirs(out, exist_ok=True)
    if os.path.isdir(model):  # tokenizer, chat template, generation config: byte-identical copies
        for name in os.listdir(model):
            src = os.path.join(model, name)
            if os.path.isfile(src) and not name.endswith(_WEIGHTS) and name != "config.json":
                shutil.copy2(src, os.path.join(out, name))
    else:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(model).save_pretrained(out)
    merged.save_pretrained(out, safe_serialization=True)
    return out


def merged_folder(model: str, adapter: str) -> str:
    """A temporary folder name for one (model, adapter) pair."""
    key = hashlib.sha256(f"{os.path.abspath(model)}|{os.path.abspath(adapter)}".encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"swirl-merged-{os.getpid()}-{key}")


class MergedAdapterEngine:
    """An engine on merged weights that answers requests for its one adapter."""

    def __init__(self, inner: Engine, adapter: str, folder: str | None = None):
        self.inner, self.adapter, self.folder = inner, adapter, folder
        self.name, self.model = inner.name, inner.model
        self.tokenizer, self.max_context, self.token_exact = (
            inner.tokenizer,
            inner.max_context,
            inner.token_exact,
        )

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        if adapter is None or os.path.abspath(adapter) != os.path.abspath(self.adapter):
            raise ValueError(
                f"this engine serves the adapter {self.adapter!r} merged into its weights; it cannot "
                f"answer a request for {adapter or 'the base model'!r} (use an engine without "
                "merge_adapter for it)"
            )
        return self.inner.generate(prompts, sampling, adapter=None, seeds=seeds)

    def close(self) -> None:
        self.inner.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
