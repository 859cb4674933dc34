"""The engine Protocol and the types every engine speaks (docs/design.md §4).

Token-in, token-out: prompts may be chat messages, raw text or token ids, but every engine turns them into ids
the same way (`encode_prompt`) and returns the prompt ids and the generated ids, so that training never
re-tokenizes text. A completion's `text` is always the decode of its `token_ids` (special tokens skipped).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Message = dict[str, str]
Prompt = str | Sequence[int] | Sequence[Message]


@dataclass(frozen=True)
class Sampling:
    """How to sample. temperature 0 = greedy. `seed` seeds prompt i with `seed + i` unless per-prompt seeds
    are given to `generate`."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ValueError(f"Sampling.max_tokens must be >= 1, got {self.max_tokens}")
        if any(not s for s in self.stop):
            raise ValueError("Sampling.stop: stop strings must be non-empty")


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (eos token or stop string) or "length" (max_tokens)
    stop: str | None = None  # the stop string that ended it (None for eos or length)
    logprobs: list[float] | None = (
        None  # log-prob of each generated token under the unmodified model distribution
    )


@dataclass
class Result:
    prompt_token_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


class Engine(Protocol):
    name: str
    model: str
    # The model's tokenizer; None only for a text-only engine given no local tokenizer (openai).
    tokenizer: PreTrainedTokenizerBase | None
    # Context limit in tokens (prompt + generated), or None when the engine does not know one. A prompt of
    # this many tokens or more cannot be run; callers check with `too_long` and skip it instead of failing a
    # batch.
    max_context: int | None
    # Whether token ids go in and come out exactly as the model reads and writes them (vllm, hf, scripted).
    # False for a text-only engine (an HTTP chat API): it is sent chat messages, and its ids are re-tokenized
    # text, so training data must not come from it.
    token_exact: bool

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        """One Result per prompt, each with `sampling.n` completions. `adapter`: a peft LoRA folder or None.
        `seeds`: one seed per prompt (overrides `sampling.seed + i`), so a prompt's samples do not depend on
        the batch it is in."""
        ...

    def close(self) -> None: ...


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: Prompt) -> list[int]:
    """Chat messages -> chat template (with the assistant generation prompt) -> ids; text -> ids; ids
    unchanged."""
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt, add_special_tokens=False))
    prompt = list(prompt)
    if not prompt:
        raise ValueError("empty prompt")
    if all(isinstance(t, int) for t in prompt):
        return [int(t) for t in prompt]
    if all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        return list(tokenizer.encode(text, add_special_tokens=False))
    raise TypeError("a prompt is a string, a list of token ids, or a list of {'role', 'content'} messages")


def too_long(engine: Engine, prompt_len: int) -> bool:
    """Whether a prompt of `prompt_len` tokens leaves the engine no room to generate (vLLM rejects such a
    prompt, and with it the whole batch). Engines with no known limit accept everything."""
    return engine.max_context is not None and prompt_len >= engine.max_context


def adapter_key(path: str) -> str:
    """Identity of an adapter's current contents: the same folder rewritten by training gets a new key."""
    weights = [
        f for f in ("adapter_model.safetensors", "adapter_model.bin") if os.path.exists(os.path.join(path, f))
    ]
    if not os.path.exists(os.path.join(path, "adapter_config.json")) or not weights:
        raise FileNotFoundError(
            f"{path}: not a peft LoRA adapter folder (needs adapter_config.json and "
            "adapter_model.safetensors)"
        )
    st = os.stat(os.path.join(path, weights[0]))
    return f"{os.path.abspath(path)}@{st.st_mtime_ns}:{st.st_size}"


def resolve_dtype(dtype: str) -> str:
    """`auto` means bfloat16 on a CUDA machine and float32 on CPU."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def prompt_seeds(sampling: Sampling, n_prompts: int, seeds: Sequence[int] | None) -> list[int | None]:
    if seeds is not None:
        if len(seeds) != n_prompts:
            raise ValueError(f"{len(seeds)} seeds for {n_prompts} prompts; give one seed per prompt")
        return [int(x) for x in seeds]
    return [None if sampling.seed is None else sampling.seed + i for i in range(n_prompts)]
