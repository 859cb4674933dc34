"""Adapters and checkpoints on disk: the final adapter, the adapter a sampler serves, and `checkpoints/step-N`
(adapter, trainable weights, optimiser, scheduler, RNG states, the metrics so far), each written to a
temporary folder and renamed, so a folder is always complete. A run killed at any point and resumed from its
latest checkpoint ends with the same adapter as an uninterrupted one. Under train.fsdp the weights and the
optimiser state are gathered from every rank's shards (fsdp.py) and rank 0 writes them, whole."""

from __future__ import annotations

import json
import os
import random
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np

from swirl.training.dist import Dist
from swirl.training.fsdp import is_sharded, load_state, optimizer_state, trainable_state

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"
SAMPLER = "sampler"


def save_adapter(model: PeftModel, path: str, state: dict[str, torch.Tensor] | None = None) -> None:
    """peft adapter folder (what vLLM and evaluation load), written atomically; `state`: the full trainable
    weights of a sharded model (`fsdp.trainable_state`), else they are read from the model."""
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    given = {} if state is None else {"state_dict": state}
    model.save_pretrained(tmp, selected_adapters=["default"], **given)  # the policy only (not oreo's value)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def publish_adapter(model: PeftModel, out_dir: str, step: int, dist: Dist) -> str:
    """The policy as it is now, for a sampler to serve: `out_dir/sampler/step-N` (a new folder, so a new
    LoRARequest), the two latest kept. Every rank gets the path once rank 0 has written it."""
    adapter = os.path.join(out_dir, SAMPLER, f"step-{step:07d}")
    state = trainable_state(model)  # a sharded model's, gathered from every rank
    if dist.rank == 0:
        save_adapter(model, adapter, state)
        for old in sorted(os.listdir(os.path.dirname(adapter)))[:-2]:
            shutil.rmtree(os.path.join(os.path.dirname(adapter), old), ignore_errors=True)
    dist.barrier()
    return adapter


def save_checkpoint(
    out_dir: str,
    step: int,
    model: PeftModel,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    log: list[dict[str, Any]],
    keep: int,
    dist: Dist,
) -> None:
    """checkpoints/step-N: adapter, trainable weights (exact), optimiser, scheduler, RNG states, metrics so
    far; the `keep` latest are kept. A sharded model's weights and optimiser state are gathered whole (the
    optimiser's keyed by parameter name)."""
    import torch

    state = trainable_state(model)
    optim = None if state is None else optimizer_state(model, opt)
    if dist.rank == 0:
        root = os.path.join(out_dir, CHECKPOINTS)
        final = os.path.join(root, f"step-{step:07d}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        save_adapter(model, os.path.join(tmp, ADAPTER), state)
        if state is None:
            state = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        torch.save(
            {
                "trainable": state,
                "optimizer": opt.state_dict() if optim is None else optim,
                "optimizer_by_name": optim is not None,
                "scheduler": sched.state_dict(),
                "rng": rng_state(),
            },
            os.path.join(tmp, "state.pt"),
        )
        with open(os.path.join(tmp, "log.json"), "w") as f:
            json.dump({"step": step, "log": log}, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    dist.barrier()


def complete_checkpoints(root: str) -> list[str]:
    """The complete checkpoint folders under `root`, oldest first."""
    if not os.path.isdir(root):
        return []
    return sorted(d for d in os.listdir(root) if d.startswith("step-") and not d.endswith(".tmp"))


def resume(
    out_dir: str,
    model: PeftModel,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
) -> tuple[int, list[dict[str, Any]]]:
    """Load the latest complete checkpoint under out_dir (step 0 and an empty log when there is none)."""
    import torch

    done = complete_checkpoints(os.path.join(out_dir, CHECKPOINTS))
    if not done:
        return 0, []
    path = os.path.join(out_dir, CHECKPOINTS, done[-1])
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    missing = set(state["trainable"]) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise ValueError(
            f"{path}: the checkpoint's trainable weights do not match this model's LoRA "
            f"({sorted(missing)[:3]}...); the LoRA config changed, so use a new output folder"
        )
    if state.get("optimizer_by_name"):  # written by a sharded model (train.fsdp); loads into either kind
        load_state(model, opt, state["trainable"], state["optimizer"])
    elif is_sharded(model):
        raise ValueError(
            f"{path}: written without train.fsdp, so it cannot resume a sharded run; set fsdp: false to "
            "resume it, or use a new output folder"
        )
    else:
        with torch.no_grad():
            for n, t in state["trainable"].items():
                params[n].copy_(t)
        opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    with open(os.path.join(path, "log.json")) as f:
        saved = json.load(f)
    return saved["step"], saved["log"]


def rng_state() -> dict[str, Any]:
    import torch

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(s: dict[str, Any]) -> None:
    import torch

    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
