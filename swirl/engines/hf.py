"""The `hf` engine: transformers `generate` with batching, stop strings, logprobs and peft LoRA adapters.

A fallback and a cross-check for the vLLM engine: on the same model and prompts, greedy decoding gives the
same token ids (tested). Sampling uses torch's generator, so sampled tokens differ from vLLM's.
"""

from __future__ import annotations

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

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class HFEngine:
    name = "hf"
    token_exact = True

    def __init__(
        self, model: str, dtype: str = "auto", batch_size: int = 16, seed: int = 0, device: str | None = None
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model
        self.max_context: int | None = (
            None  # transformers runs any length (past the trained positions, badly)
        )
        self.batch_size = batch_size
        self.seed = seed
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self._torch_dtype = getattr(torch, resolve_dtype(dtype))
        self.base = (
            AutoModelForCausalLM.from_pretrained(model, dtype=self._torch_dtype).to(self.device).eval()
        )
        self._peft: PeftModel | None = None  # PeftModel wrapping self.base once an adapter is used
        self._adapters: dict[str, str] = {}  # adapter_key -> peft adapter name
        self.pad_id = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        eos = self.tokenizer.eos_token_id
        gen_eos = self.base.generation_config.eos_token_id
        self.eos_ids = {eos} | (set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}) - {None}

    # ------------------------------------------------------------------------------------- adapters
    def _model_for(self, adapter: str | None) -> PreTrainedModel | PeftModel:
        if adapter is None:
            return self.base if self._peft is None else self._peft
        adapter = local_copy(adapter)  # an adapter in a remote store (s3://...): its local copy
        key = adapter_key(adapter)
        if key not in self._adapters:
            from peft import PeftModel

            name = f"a{len(self._adapters)}"
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.base, adapter, adapter_name=name).eval()
            else:
                self._peft.load_adapter(adapter, adapter_name=name)
            self._adapters[key] = name
        self._peft.set_adapter(self._adapters[key])
        return self._peft

    # ------------------------------------------------------------------------------------- generate
    def generate(
        self,
        prompts: Sequence[Prompt],
        sampling: Sampling,
        adapter: str | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Result]:
        """Batches of `batch_size` prompts. Sampling seeds torch once per batch with its first prompt's seed,
        so sampled (not greedy) outputs depend on the batch composition, unlike vLLM's per-request seeds."""
        import contextlib

        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        per_seed = prompt_seeds(sampling, len(ids), seeds)
        model = self._model_for(adapter)
        ctx = (
            model.disable_adapter()
            if (adapter is None and self._peft is not None)
            else contextlib.nullcontext()
        )
        results = [Result(prompt_token_ids=p) for p in ids]
        with ctx:
            for start in range(0, len(ids), self.batch_size):
                chunk = list(range(start, min(start + self.batch_size, len(ids))))
                batch_seed = per_seed[chunk[0]]
                for i, comps in zip(
                    chunk,
                    self._generate_batch(model, [ids[i] for i in chunk], sampling, batch_seed),
                    strict=True,
                ):
                    results[i].completions = comps
        return results

    def _generate_batch(
        self, model: PreTrainedModel | PeftModel, batch: list[list[int]], s: Sampling, seed: int | None
    ) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        width = max(len(p) for p in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, p in enumerate(batch):  # left padding
            input_ids[r, width - len(p) :] = torch.tensor(p)
            attn[r, width - len(p) :] = 1
        rows = len(batch) * s.n
        stopper = _StopCriteria(self.tokenizer, width, s.stop, self.eos_ids, rows)
        greedy = s.temperature == 0
        cfg = GenerationConfig(
            max_new_tokens=s.max_tokens,
            do_sample=not greedy,
            temperature=None if greedy else s.temperature,
            top_p=None if greedy else s.top_p,
            top_k=None if greedy else 0,
            num_return_sequences=s.n,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            return_dict_in_generate=True,
            output_logits=s.logprobs,
        )
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attn.to(self.device),
                generation_config=cfg,
                stopping_criteria=StoppingCriteriaList([stopper]),
            )
        gen = out.sequences[:, width:].cpu()  # [rows, steps]
        logp = None
        if s.logprobs:
            logits = torch.stack(out.logits, dim=1).float()  # [rows, steps, vocab]
            logp = (
                torch.log_softmax(logits, dim=-1)
                .gather(-1, gen.unsqueeze(-1).to(logits.device))
                .squeeze(-1)
                .cpu()
            )
        per_prompt: list[list[Completion]] = [[] for _ in batch]
        for r in range(rows):
            n_tok = stopper.done_at[r] if stopper.done_at[r] is not None else gen.shape[1]
            toks = gen[r, :n_tok].tolist()
            finished = stopper.done_at[r] is not None
            per_prompt[r // s.n].append(
                Completion(
                    token_ids=toks,
                    text=self.tokenizer.decode(toks, skip_special_tokens=True),
                    finish_reason="stop" if finished else "length",
                    stop=stopper.stop_str[r],
                    logprobs=logp[r, :n_tok].tolist() if logp is not None else None,
                )
            )
        return per_prompt

    def close(self) -> None:
        self.base = self._peft = None


class _StopCriteria:
    """Per-row stop on an eos token or on a stop string appearing in the decoded completion (as vLLM does)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompt_width: int,
        stops: tuple[str, ...],
        eos_ids: set[int],
        rows: int,
    ):
        self.tok, self.width, self.stops, self.eos = tokenizer, prompt_width, stops, eos_ids
        self.done_at: list[int | None] = [None] * rows
        self.stop_str: list[str | None] = [None] * rows
        self._text_len = [0] * rows

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        import torch

        gen = input_ids[:, self.width :]
        n = gen.shape[1]
        for r in range(gen.shape[0]):
            if self.done_at[r] is not None:
                continue
            if int(gen[r, -1]) in self.eos:
                self.done_at[r] = n
                continue
            if self.stops:
                text = self.tok.decode(gen[r].tolist(), skip_special_tokens=True)
                hits = [(text.find(st, max(0, self._text_len[r] - len(st) + 1)), st) for st in self.stops]
                hits = [(pos, st) for pos, st in hits if pos >= 0]
                if hits:
                    self.done_at[r], self.stop_str[r] = n, min(hits)[1]
                self._text_len[r] = len(text)
        return torch.tensor([d is not None for d in self.done_at], device=input_ids.device)
