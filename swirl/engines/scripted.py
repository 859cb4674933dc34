"""A deterministic engine that replays scripted text: for tests and for debugging a protocol without a model.

`script(prompt_text, seed) -> str` returns what "the model" says next. The text is tokenized with a real
tokenizer; stop strings cut it right after the first one (as vLLM does with include_stop_str_in_output); text
with no stop string ends the turn with the eos token; `max_tokens` truncates it (finish_reason "length").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from swirl.engines.base import Completion, Prompt, Result, Sampling, encode_prompt, prompt_seeds

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class ScriptedEngine:
    name = "scripted"
    token_exact = True  # its ids are the tokenizer's encoding of the scripted text, exactly what it returns

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        script: Callable[[str, int | None], str],
        model: str = "scripted",
        max_context: int | None = None,
    ):
        self.tokenizer, self.script, self.model = tokenizer, script, model
        self.max_context = max_context  # when set, an over-long prompt raises, as vLLM does
        self.calls: list[int] = []  # prompts per generate call (to check step-synchronous batching)
        self.produced: list[list[int]] = []  # every completion's ids, in order

    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        self.calls.append(len(prompts))
        out = []
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        for ids in encoded:
            if self.max_context is not None and len(ids) >= self.max_context:
                raise ValueError(
                    f"prompt of {len(ids)} tokens is longer than the maximum model length {self.max_context}"
                )
        for ids, seed in zip(encoded, prompt_seeds(sampling, len(prompts), seeds), strict=True):
            comps = []
            for k in range(sampling.n):
                text = self.script(self.tokenizer.decode(ids), None if seed is None else seed + k)
                hits = [(text.find(s), s) for s in sampling.stop if s in text]
                stop = min(hits)[1] if hits else None
                if stop:
                    text = text[: text.find(stop) + len(stop)]
                toks = list(self.tokenizer.encode(text, add_special_tokens=False))
                if not stop:
                    toks.append(self.tokenizer.eos_token_id)
                reason = "stop"
                if len(toks) > sampling.max_tokens:
                    toks, reason, stop = toks[: sampling.max_tokens], "length", None
                self.produced.append(toks)
                comps.append(
                    Completion(
                        toks,
                        self.tokenizer.decode(toks, skip_special_tokens=True),
                        reason,
                        stop,
                        [-1.0] * len(toks) if sampling.logprobs else None,
                    )
                )
            out.append(Result(ids, comps))
        return out

    def close(self) -> None:
        pass
