"""The training loop: one LoRA adapter trained on the filtered steps, read top to bottom in `train` (setup,
the steps, cleanup).

Each optimizer step takes its training items (a seeded permutation per epoch), lets the objective make its
sequences (the logged actions with their weights, whole trajectories, or actions sampled from the current
policy and scored by the reward model) with loss coefficients normalised over the whole step, runs the
micro-batches, clips, steps, logs, checkpoints. What differs by objective comes from its module in
objectives/. Everything that decides a step (data order, sampling seeds) is a function of (seed, step), and a
checkpoint holds the adapter, optimiser, scheduler, RNG states and the metrics so far (checkpoints.py), so a
run killed at any point and resumed ends with the same adapter as an uninterrupted one.

Under `torchrun`/`accelerate launch`/Ray Train (WORLD_SIZE > 1) every rank runs this same loop (dist.py), on
a whole copy of the model or, with train.fsdp, on its shard of it (fsdp.py).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from swirl.engines.base import Engine
from swirl.training.batches import Seq, micro_batches
from swirl.training.checkpoints import ADAPTER, publish_adapter, resume, save_adapter, save_checkpoint
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData
from swirl.training.dist import Dist
from swirl.training.fsdp import is_sharded, shard, trainable_state, wanted
from swirl.training.metrics import Metrics
from swirl.training.objectives import Objective, Step, objective_for
from swirl.training.objectives.base import ParamGroup
from swirl.training.rewards import RewardModel

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

__all__ = ["Dist", "TrainResult", "build_policy", "lr_factor", "shown_metrics", "step_items", "train"]

# What the loop itself reports every step (an objective's own metrics: its `shows`): the policy's gradient
# norm before clipping, the learning rate, forwarded tokens per second of forward + backward; the loss tokens,
# the forwarded tokens (no padding), the padded share, the micro-batches, the whole step's seconds.
LOOP_METRICS = Metrics(
    ("grad_norm", "lr", "tokens_per_s"), ("trained_tokens", "tokens", "padding", "micro_batches", "seconds")
)


@dataclass
class TrainResult:
    adapter_dir: str
    log: list[dict[str, Any]] = field(default_factory=list)


def train(
    cfg: TrainConfig,
    model_path: str,
    data: TrainData,
    out_dir: str,
    sampler: Engine | None = None,
    reward: RewardModel | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter into `out_dir/adapter` (and, for oreo, the value model into `out_dir/value`);
    checkpoints go to `out_dir/checkpoints/step-N`.

    `sampler` (an Engine) and `reward` (a RewardModel) are needed by the swirl objective."""
    import torch

    # setup: the objective, the step plan, the model and its optimiser, resumed from the latest checkpoint
    dist = Dist.from_env()
    objective = objective_for(cfg)
    check_inputs(cfg, objective, data, sampler, reward)
    n_items, per_step = data.n_items, objective.per_step(cfg)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * math.ceil(n_items / per_step)))
    sharded = wanted(cfg.fsdp, dist)
    model, tokenizer, device = build_policy(cfg, model_path, dist, keep_on_cpu=sharded)
    groups = objective.build(model, cfg)  # [(name, parameters, peak lr)], the policy's first
    if sharded:  # each rank keeps its shard, moved to its device
        groups = shard(model, groups, device)
    opt = torch.optim.AdamW(
        [{"params": ps, "lr": lr} for _, ps, lr in groups],
        lr=cfg.learning_rate,
        betas=cfg.adam_betas,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, total))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start, log = resume(out_dir, model, opt, sched)  # restores the RNG states too
    if start == 0:
        seed_everything(cfg.seed)

    for step in range(start, total):
        t_step = time.perf_counter()
        adapter = publish_adapter(model, out_dir, step, dist) if objective.samples else None
        items = step_items(n_items, per_step, step, cfg.seed)  # indices of this step's examples / states
        seqs, seq_metrics = objective.sequences(Step(cfg, data, items, step, dist, sampler, reward, adapter))
        t_train = time.perf_counter()
        sums, n_micro = backward(model, seqs, cfg, pad_id, device, dist, groups, objective)
        norms = clip(groups, cfg.max_grad_norm)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        t_end = time.perf_counter()
        metrics = {
            "step": step + 1,
            **objective.loss_metrics(sums, seqs, step + 1, cfg),
            **norms,
            "lr": lr,
            "trained_tokens": int(sums["tokens"]),
            "tokens": int(sums["real"]),
            "padding": 1.0 - sums["real"] / sums["padded"] if sums["padded"] else 0.0,
            "micro_batches": n_micro,
            "tokens_per_s": sums["real"] / max(t_end - t_train, 1e-9),
            "seconds": t_end - t_step,
            **seq_metrics,
        }
        log.append(metrics)
        if on_step and dist.rank == 0:
            on_step(metrics)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
            save_checkpoint(out_dir, step + 1, model, opt, sched, log, cfg.keep_checkpoints, dist)

    # cleanup: the final adapter, and the objective's own modules beside it
    state = trainable_state(model)  # a sharded model's, gathered from every rank
    if dist.rank == 0:
        save_adapter(model, os.path.join(out_dir, ADAPTER), state)
        objective.save(model, out_dir)
    dist.barrier()
    return TrainResult(os.path.join(out_dir, ADAPTER), log)


def shown_metrics(objective: Objective) -> Metrics:
    """Every metric a step of `objective` reports: its own, then the loop's."""
    return objective.shows + LOOP_METRICS


# ------------------------------------------------------------------------------------------ helpers
def check_inputs(
    cfg: TrainConfig,
    objective: Objective,
    data: TrainData,
    sampler: Engine | None,
    reward: RewardModel | None,
) -> None:
    if data.n_items == 0:
        raise ValueError(
            f"train: no training data for objective {cfg.objective!r} ({data.summary}); "
            "check the filter strategy kept some steps"
        )
    if objective.samples and (sampler is None or reward is None):
        raise ValueError(
            f"the {cfg.objective} objective samples actions from the current policy: pass a sampler engine "
            "and a reward model"
        )


def backward(
    model: PeftModel,
    seqs: list[Seq],
    cfg: TrainConfig,
    pad_id: int,
    device: torch.device,
    dist: Dist,
    groups: list[ParamGroup],
    objective: Objective,
) -> tuple[dict[str, float], int]:
    """Forward and backward over this rank's micro-batches of the step, gradients summed over ranks; returns
    the step's sums (every number of the objective's loss `parts`, summed; then real and padded tokens; the
    `*_max` fields: this rank's largest) and the number of micro-batches. A sharded model needs as many passes
    on every rank (FSDP gathers weights in each): a rank with fewer micro-batches adds zero-weight passes."""
    model.train()
    numbers = [f.name for f in fields(objective.parts) if f.name != "loss"]
    summed = [k for k in numbers if not k.endswith("_max")]
    maxima = dict.fromkeys((k for k in numbers if k.endswith("_max")), 0.0)
    names = (*summed, "real", "padded")
    sums = np.zeros(len(names))
    mbs = micro_batches(seqs, cfg.micro_batch_tokens, pad_id, device)
    mine = mbs[dist.rank :: dist.world]
    for mb in mine:
        part = objective.loss(model, mb, cfg)
        part.loss.backward()
        sums += [*(getattr(part, k) for k in summed), mb.real_tokens, mb.padded_tokens]
        maxima = {k: max(v, getattr(part, k)) for k, v in maxima.items()}
    if is_sharded(model):  # FSDP has summed the gradients
        for _ in range(len(mine), math.ceil(len(mbs) / dist.world)):
            objective.loss(model, mbs[0], cfg).loss.mul(0.0).backward()
        sums = dist.sum_numbers(sums)
    else:
        sums = dist.sum_grads_and([p for _, ps, _ in groups for p in ps], sums)
    return {**dict(zip(names, sums.tolist(), strict=True)), **maxima}, len(mbs)


def clip(groups: list[ParamGroup], max_norm: float | None) -> dict[str, float]:
    """Clip each group's gradient on its own; their norms before clipping: the policy's as grad_norm, the
    others' as <name>_grad_norm."""
    import torch

    def whole(norm: torch.Tensor) -> float:  # a sharded model's gradients give a DTensor norm
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    return {
        ("grad_norm" if k == 0 else f"{name}_grad_norm"): whole(
            torch.nn.utils.clip_grad_norm_(ps, max_norm or float("inf"))
        )
        for k, (name, ps, _) in enumerate(groups)
    }


def build_policy(
    cfg: TrainConfig, model_path: str, dist: Dist, keep_on_cpu: bool = False
) -> tuple[PeftModel, PreTrainedTokenizerBase, torch.device]:
    """The base model with a LoRA adapter (fresh, seeded, or cfg.lora.init_adapter), its tokenizer, its
    device (the model stays in CPU memory when `keep_on_cpu`: fsdp.shard moves each rank's shard there)."""
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the trainer reports its own progress
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{dist.local_rank}" if cuda else "cpu")
    dtype = {
        "auto": torch.bfloat16 if cuda else torch.float32,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
    }[cfg.dtype]
    torch.manual_seed(cfg.seed)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if not keep_on_cpu:
        base = base.to(device)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    if cfg.lora.init_adapter:
        model = PeftModel.from_pretrained(base, cfg.lora.init_adapter, is_trainable=True)
    else:
        model = get_peft_model(base, cfg.lora.peft_config())
    for p in model.parameters():  # LoRA weights train in float32 even on a bfloat16 base
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model, AutoTokenizer.from_pretrained(model_path), device


def lr_factor(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up to the peak, then cosine / linear decay to min_lr_ratio, or constant."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay


def step_items(n: int, per_step: int, step: int, seed: int) -> list[int]:
    """The items of optimizer step `step`: a seeded permutation per epoch, cut into consecutive slices (the
    last slice of an epoch may be short). A pure function of (n, per_step, step, seed): no iterator state to
    save."""
    steps_per_epoch = math.ceil(n / per_step)
    epoch, k = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[k * per_step : (k + 1) * per_step].tolist()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
