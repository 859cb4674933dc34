"""OREO's value model (docs/method.md §2): the policy's base model with its own LoRA adapter and a bias-free
linear head, zero-initialised, so V = 0 everywhere before training.

One frozen base serves three models through peft's adapters: the policy (adapter `default`), the value model
(adapter `value` + `value_head`) and the reference policy (the frozen adapter `reference`, a copy of the one
training started from, or the base with the adapters disabled). The paper keeps three copies of the weights;
this keeps one. The reference helpers (`add_reference`, `reference_policy`) serve the KL penalty of the other
objectives too (swirl/training/losses.py).

`V(ids[:end])`, the value of a prefix, is read from the last hidden state of the prefix, at position end - 1
(`prefix_values`). The trainer and the beam search's scorer both go through it, so they agree on the shift.

A value folder (the train output's `value/`) holds the value adapter in peft's format and the head in
`value_head.safetensors` (`weight`: [1, hidden]); `ValueScorer` loads it on the base model.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import Cache, PreTrainedModel

VALUE_ADAPTER = "value"
POLICY_ADAPTER = "default"
REFERENCE_ADAPTER = "reference"  # frozen: the policy training started from, when it started from an adapter
HEAD_FILE = "value_head.safetensors"


def add_value_model(model: PeftModel, lora_config: LoraConfig) -> None:
    """Give a peft policy model the value adapter (a fresh LoRA on the same base) and a zero value head, both
    trainable; the policy adapter stays the active one."""
    import torch

    model.add_adapter(VALUE_ADAPTER, lora_config)
    hidden = model.get_base_model().config.hidden_size
    device = next(model.parameters()).device
    head = torch.nn.Linear(hidden, 1, bias=False, device=device, dtype=torch.float32)
    torch.nn.init.zeros_(head.weight)
    model.value_head = head  # a submodule of the PeftModel: in named_parameters, so checkpoints hold it
    for name, p in model.named_parameters():
        if f".{VALUE_ADAPTER}." in name and "lora_" in name and p.dtype != torch.float32:
            p.data = p.data.float()  # LoRA weights train in float32 even on a bfloat16 base
    _mark_trainable(model)


def value_parameters(model: PeftModel) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of the value adapter and the head, in a fixed order."""
    return [
        (n, p)
        for n, p in model.named_parameters()
        if n.startswith("value_head.") or (f".{VALUE_ADAPTER}." in n and "lora_" in n)
    ]


def _mark_trainable(model: PeftModel) -> None:
    # peft's set_adapter freezes every adapter but the active one; the policy and value adapters train here,
    # the reference adapter never does.
    for name, p in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            p.requires_grad_(False)
        elif "lora_" in name or name.startswith("value_head."):
            p.requires_grad_(True)


def add_reference(model: PeftModel, adapter_dir: str) -> None:
    """Make the adapter training started from (a warm-up's, a previous round's) the frozen reference policy:
    OREO's KL and log-ratios, and the KL penalty of sft / swirl_offline / swirl (swirl/training/losses.py),
    are then taken against the policy training started from (OREO's paper: an SFT model), not against the
    raw base. Another LoRA on the same base, never trained; the policy adapter stays active."""
    model.load_adapter(adapter_dir, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.set_adapter(POLICY_ADAPTER)
    _mark_trainable(model)


@contextmanager
def reference_policy(model: PeftModel) -> Iterator[None]:
    """Run the model as the reference policy: the frozen starting adapter if there is one, else the base
    (adapters disabled)."""
    if REFERENCE_ADAPTER in model.peft_config:
        with using_adapter(model, REFERENCE_ADAPTER):
            yield
    else:
        with model.disable_adapter():
            yield


@contextmanager
def using_adapter(model: PeftModel, name: str) -> Iterator[None]:
    """Run the model with adapter `name` active, then the policy adapter again (both stay trainable)."""
    model.set_adapter(name)
    _mark_trainable(model)
    try:
        yield
    finally:
        model.set_adapter(POLICY_ADAPTER)
        _mark_trainable(model)


def prefix_values(
    model: PeftModel | PreTrainedModel,
    head: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    row: torch.Tensor,
    end: torch.Tensor,
    past_key_values: Cache | None = None,
) -> torch.Tensor:
    """V(input_ids[row, :end]) for each (row, end): [N] float32, from the hidden state at end - 1 (the last
    token of the prefix) of the *active* adapter, through `head`. `end` >= 1.

    With `past_key_values` (a cache of shared leading tokens, one copy per row), `input_ids` are the tokens
    after them and `end` counts from there: the attention mask then covers the cached tokens too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    hidden = decoder(
        input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values
    ).last_hidden_state  # [B, T, H]
    last = hidden[row, end - 1]  # [N, H]: the prefix ids[:end] ends at position end - 1
    return head(last.float()).squeeze(-1)  # [N]


def save_value_model(model: PeftModel, folder: str) -> None:
    """Write the value adapter (peft format) and the head to `folder`, atomically."""
    from safetensors.torch import save_file

    tmp = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, selected_adapters=[VALUE_ADAPTER])  # peft writes it to tmp/value/
    save_file(
        {"weight": model.value_head.weight.detach().cpu().contiguous()},
        os.path.join(tmp, VALUE_ADAPTER, HEAD_FILE),
    )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(os.path.join(tmp, VALUE_ADAPTER), folder)
    shutil.rmtree(tmp, ignore_errors=True)


class ValueScorer:
    """Scores partial trajectories with a trained value model: `scorer(prefixes) -> [V(prefix)]`, each prefix
    a list of token ids. Loads the base model `model_path`, the value adapter and the head of `value_dir`.

    Prefixes that share their leading tokens (a beam's candidates share the prompt: the worked example and the
    question, most of each sequence) are scored from one forward pass of the shared tokens: its key/value
    cache is repeated for the group's rows and only the rest of each prefix is run (`min_shared` tokens or
    more, else each prefix is run whole). bench/value_scorer.py measures the saving and the agreement."""

    def __init__(
        self,
        model_path: str,
        value_dir: str,
        batch_size: int = 8,
        device: str | None = None,
        min_shared: int = 32,
    ):
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from swirl.store import local_copy

        value_dir = local_copy(value_dir)  # a value model in a remote store (s3://...): its local copy
        head_path = os.path.join(value_dir, HEAD_FILE)
        if not os.path.exists(head_path):
            raise FileNotFoundError(
                f"{value_dir}: not a value model folder (no {HEAD_FILE}); give the `value` folder of a train "
                "output with train.objective oreo (<root>/train/<version>/files/value)"
            )
        cuda = torch.cuda.is_available()
        self.device = torch.device(device or ("cuda" if cuda else "cpu"))
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device)
        self.model = PeftModel.from_pretrained(base, value_dir).eval()
        weight = load_file(head_path)["weight"]  # [1, H]
        self.head = torch.nn.Linear(weight.shape[1], 1, bias=False).to(self.device)
        with torch.no_grad():
            self.head.weight.copy_(weight)
        self.pad_id = base.config.pad_token_id if base.config.pad_token_id is not None else 0
        self.batch_size = batch_size
        self.min_shared = min_shared  # 0: never share (every prefix run whole)

    def __call__(self, prefixes: Sequence[Sequence[int]]) -> list[float]:
        seqs = [list(p) for p in prefixes]
        out: list[float] = [0.0] * len(seqs)
        for members, shared in _shared_groups(seqs, self.min_shared):
            group = [seqs[i] for i in members]
            values = self._score_group(group, shared) if shared else self._score_whole(group)
            for i, v in zip(members, values, strict=True):
                out[i] = v
        return out

    def _score_whole(self, prefixes: list[list[int]]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(prefixes), self.batch_size):
            out += self._forward(prefixes[i : i + self.batch_size], None, 0)
        return out

    def _score_group(self, prefixes: list[list[int]], shared: int) -> list[float]:
        """Prefixes whose first `shared` tokens are equal (each is longer): one pass over those tokens, then
        the rest of each from that cache."""
        import torch

        head_ids = torch.tensor([prefixes[0][:shared]], dtype=torch.long, device=self.device)  # [1, S]
        decoder = self.model.get_base_model().get_decoder()
        with torch.no_grad():
            cache = decoder(input_ids=head_ids, use_cache=True).past_key_values
        out: list[float] = []
        for i in range(0, len(prefixes), self.batch_size):
            chunk = [p[shared:] for p in prefixes[i : i + self.batch_size]]
            past = copy.deepcopy(cache)  # the forward appends to the cache it is given
            past.batch_repeat_interleave(len(chunk))
            out += self._forward(chunk, past, shared)
        return out

    def _forward(self, chunk: list[list[int]], past: Cache | None, past_len: int) -> list[float]:
        import torch

        longest = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), past_len + longest), dtype=torch.long)
        mask[:, :past_len] = 1
        for r, p in enumerate(chunk):  # right padding: a prefix's last token stays at len(p) - 1
            ids[r, : len(p)] = torch.tensor(p, dtype=torch.long)
            mask[r, past_len : past_len + len(p)] = 1
        rows = torch.arange(len(chunk))
        ends = torch.tensor([len(p) for p in chunk])
        with torch.no_grad():
            v = prefix_values(
                self.model, self.head, ids.to(self.device), mask.to(self.device), rows, ends, past
            )
        return v.cpu().tolist()

    def close(self) -> None:
        del self.model


def _shared_groups(prefixes: list[list[int]], min_shared: int) -> list[tuple[list[int], int]]:
    """Group the prefixes (by index) that share at least `min_shared` leading tokens: [(members, shared)],
    `shared` = the leading tokens all members share, at most each member's length less one (each member needs
    a token of its own to run: its value is read at its last token); shared = 0 for a prefix run whole.
    Prefixes are taken in order; each joins the first group whose shared tokens it starts with at `min_shared`
    or more."""
    groups: list[tuple[list[int], int]] = []
    for i, p in enumerate(prefixes):
        for g, (members, shared) in enumerate(groups):
            first = prefixes[members[0]]
            common = _common_length(first, p, shared)
            if min_shared and common >= min_shared:
                groups[g] = (members + [i], common)
                break
        else:
            groups.append(([i], len(p) - 1))
    return [(m, s if len(m) > 1 and min_shared and s >= min_shared else 0) for m, s in groups]


def _common_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Leading tokens a and b share, at most `limit` and at most len(b) - 1."""
    n = min(limit, len(b) - 1, len(a))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n
