"""Seeded random LoRA adapters (and OREO value models) for tests, benchmarks and smoke runs.

A trained-from-scratch adapter starts with lora_B = 0 and changes nothing; these have lora_B ~ N(0, std), so
the adapter changes the model's outputs (a test can tell an adapter that was applied from one that was not).
The companion of `swirl.models.tiny`: the tests build their adapters here, and so do bench/cpu_engine.py and
bench/value_scorer.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def lora_config(rank: int = 8, alpha: int | None = None, targets: Sequence[str] = ALL_LINEAR) -> Any:
    """A LoRA shape (peft.LoraConfig, no dropout) whose A and B both start random (init_lora_weights=False);
    `alpha` defaults to 2 * rank."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha or 2 * rank,
        target_modules=list(targets),
        lora_dropout=0.0,
        init_lora_weights=False,
    )


def random_lora(
    model_dir: str,
    lora: Any = None,
    std: float | None = 0.1,
    seed: int = 0,
    value: bool = False,
    head_std: float | None = None,
) -> Any:
    """The float32 model at `model_dir` with a LoRA adapter (`lora`: a peft LoraConfig, default
    `lora_config()`) whose every lora_B is drawn from N(0, std) (None: peft's own init). `value`: OREO's value
    adapter and head as well (`swirl.models.value.add_value_model`), the head ~ N(0, head_std or std).
    Deterministic given `seed`."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    lora = lora or lora_config()
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), lora)
    if value:
        from swirl.models.value import add_value_model

        add_value_model(model, lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and std is not None:
                p.normal_(0, std)
            elif name.startswith("value_head"):
                p.normal_(0, head_std or std or 0.1)
    return model


def save_random_adapter(model_dir: str, out: str, **kw: Any) -> str:
    """`random_lora(model_dir, **kw)`'s adapter saved (peft format) to `out`; returns `out`."""
    random_lora(model_dir, **kw).save_pretrained(out)
    return out


def save_random_value_model(model_dir: str, folder: str, **kw: Any) -> str:
    """A value-model folder (the value adapter and head, as the oreo trainer saves them) with random weights:
    `random_lora(model_dir, value=True, **kw)`; returns `folder`."""
    from swirl.models.value import save_value_model

    save_value_model(random_lora(model_dir, value=True, **kw), folder)
    return folder
