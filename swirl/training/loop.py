"""The trainer (docs/method.md §1.4, §2): LoRA on a causal LM, one loop for sft, swirl_offline, swirl, oreo.

Read `train` top to bottom: build the policy and optimiser, resume from the latest checkpoint, then for every
optimizer step build the step's sequences (logged actions, or actions sampled from the current policy and
scored by the reward model), normalise their loss coefficients over the whole step, run the micro-batches,
clip, step, log, checkpoint. What differs by objective (extra trainable modules such as oreo's value model,
the coefficients, the micro-batch loss, its metrics) comes from the objective's hooks (objectives.py).
Everything that decides a step (data order, sampling seeds) is a function of (seed, step), and a checkpoint
holds the adapter, optimiser, scheduler, RNG states and the metrics so far, so a run killed at any point and
resumed ends with the same adapter as an uninterrupted one.

Under `torchrun`/`accelerate launch` (WORLD_SIZE > 1) every rank builds the same step plan, samples its share
of the states (swirl), gathers the step's sequences, runs its share of the micro-batches, and the LoRA
gradients are summed across ranks (the coefficients are normalised over the whole step, so the sum is the
step's gradient).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from swirl.training.batches import Seq, micro_batches
from swirl.training.config import TrainConfig
from swirl.training.data import TrainData
from swirl.training.objectives import Objective, Step, objective_for

ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    adapter_dir: str
    log: list[dict[str, Any]] = field(default_factory=list)


def train(
    cfg: TrainConfig,
    model_path: str,
    data: TrainData,
    out_dir: str,
    sampler: Any = None,
    reward: Any = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter into `out_dir/adapter` (and, for oreo, the value model into `out_dir/value`);
    checkpoints go to `out_dir/checkpoints/step-N`.

    `sampler` (an Engine) and `reward` (a RewardModel) are needed by the swirl objective."""
    import torch

    dist = Dist.from_env()
    objective = objective_for(cfg)
    n_items = objective.items(data)
    if n_items == 0:
        raise ValueError(
            f"train: no training data for objective {cfg.objective!r} ({data.summary}); "
            "check the filter strategy kept some steps"
        )
    if objective.samples and (sampler is None or reward is None):
        raise ValueError(
            f"the {cfg.objective} objective samples actions from the current policy: pass a sampler engine "
            "and a reward model"
        )
    per_step = objective.per_step(cfg)
    steps_per_epoch = math.ceil(n_items / per_step)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))

    model, tokenizer, device = build_policy(cfg, model_path, dist)
    groups = objective.build(model, cfg)  # [(name, parameters, peak lr)], the policy's first
    params = [p for _, ps, _ in groups for p in ps]
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
    result = TrainResult(os.path.join(out_dir, ADAPTER), log)

    for step in range(start, total):
        t_step = time.perf_counter()
        items = step_items(n_items, per_step, step, cfg.seed)  # indices of this step's examples / states
        inputs = Step(cfg, data, items, step, model, out_dir, sampler, reward, dist, save_adapter)
        seqs, m = objective.sequences(inputs)
        seqs = objective.coefficients(seqs, cfg)
        t_train = time.perf_counter()
        sums, n_micro = backward(model, seqs, cfg, pad_id, device, dist, params, objective)
        norms = {  # each group clipped on its own: the policy's as grad_norm, others as <name>_grad_norm
            ("grad_norm" if k == 0 else f"{name}_grad_norm"): float(
                torch.nn.utils.clip_grad_norm_(ps, cfg.max_grad_norm or float("inf"))
            )
            for k, (name, ps, _) in enumerate(groups)
        }
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        t_end = time.perf_counter()
        metrics = {
            "step": step + 1,
            **objective.loss_metrics(sums, cfg),
            **norms,
            "lr": lr,
            "trained_tokens": int(sums["tokens"]),
            "tokens": int(sums["real"]),
            "padding": 1.0 - sums["real"] / sums["padded"] if sums["padded"] else 0.0,
            "micro_batches": n_micro,
            "tokens_per_s": sums["real"] / max(t_end - t_train, 1e-9),
            "seconds": t_end - t_step,
            **m,
        }
        objective.check(cfg, step + 1, seqs, metrics, sums)
        log.append(metrics)
        if on_step and dist.rank == 0:
            on_step(metrics)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == total:
            save_checkpoint(out_dir, step + 1, model, opt, sched, log, cfg.keep_checkpoints, dist)
    if dist.rank == 0:
        save_adapter(model, result.adapter_dir)
        objective.save(model, out_dir)
    dist.barrier()
    return result


# ------------------------------------------------------------------------------------------ helpers
def backward(
    model, seqs, cfg: TrainConfig, pad_id: int, device, dist: Dist, params, objective: Objective
) -> tuple[dict[str, float], int]:
    """Forward and backward over this rank's micro-batches of the step, gradients summed over ranks; returns
    the step's sums (the objective's `sums`, e.g. policy loss, KL, log-prob sum, sampler drift, loss tokens;
    then real and padded tokens, and this rank's largest drift) and the number of micro-batches."""
    model.train()
    names = (*objective.sums, "real", "padded")
    sums = np.zeros(len(names))
    drift_max = 0.0
    mbs = micro_batches(seqs, cfg.micro_batch_tokens, pad_id, device)
    for mb in mbs[dist.rank :: dist.world]:
        loss, part = objective.loss(model, mb, cfg)
        loss.backward()
        sums += [*(part[k] for k in objective.sums), mb.real_tokens, mb.padded_tokens]
        drift_max = max(drift_max, part.get("drift_max", 0.0))
    sums = dist.sum_grads_and(params, sums)
    return {**dict(zip(names, sums.tolist(), strict=True)), "drift_max": drift_max}, len(mbs)


def build_policy(cfg: TrainConfig, model_path: str, dist: Dist) -> tuple[Any, Any, Any]:
    """The base model with a LoRA adapter (fresh, seeded, or cfg.lora.init_adapter), its tokenizer, its
    device."""
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
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    if cfg.lora.init_adapter:
        model = PeftModel.from_pretrained(base, cfg.lora.init_adapter, is_trainable=True)
    else:
        lora = cfg.lora.peft_config()
        model = get_peft_model(base, lora)
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


def save_adapter(model: Any, path: str) -> None:
    """peft adapter folder (what vLLM and evaluation load), written atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, selected_adapters=["default"])  # the policy only (not oreo's value adapter)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def save_checkpoint(
    out_dir: str, step: int, model: Any, opt: Any, sched: Any, log: list, keep: int, dist: Dist
) -> None:
    """checkpoints/step-N: adapter, trainable weights (exact), optimiser, scheduler, RNG states, metrics so
    far. Written to a temporary folder and renamed, so a checkpoint folder is always complete."""
    import torch

    if dist.rank == 0:
        root = os.path.join(out_dir, CHECKPOINTS)
        final = os.path.join(root, f"step-{step:07d}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        save_adapter(model, os.path.join(tmp, ADAPTER))
        trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        torch.save(
            {
                "trainable": trainable,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng_state(),
            },
            os.path.join(tmp, "state.pt"),
        )
        with open(os.path.join(tmp, "log.json"), "w") as f:
            json.dump({"step": step, "log": log}, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(d for d in os.listdir(root) if d.startswith("step-") and not d.endswith(".tmp"))[
            :-keep
        ]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    dist.barrier()


def resume(out_dir: str, model: Any, opt: Any, sched: Any) -> tuple[int, list[dict[str, Any]]]:
    """Load the latest complete checkpoint under out_dir (step 0 and an empty log when there is none)."""
    import torch

    root = os.path.join(out_dir, CHECKPOINTS)
    done = (
        sorted(d for d in os.listdir(root) if d.startswith("step-") and not d.endswith(".tmp"))
        if os.path.isdir(root)
        else []
    )
    if not done:
        return 0, []
    path = os.path.join(root, done[-1])
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    missing = set(state["trainable"]) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise ValueError(
            f"{path}: the checkpoint's trainable weights do not match this model's LoRA "
            f"({sorted(missing)[:3]}...); the LoRA config changed, so use a new output folder"
        )
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


@dataclass
class Dist:
    """torch.distributed when launched by torchrun/accelerate (WORLD_SIZE > 1), else a single process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as td

        if not td.is_initialized():
            td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        return cls(td.get_rank(), world, local)

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def sum_grads_and(self, params: list, sums: np.ndarray) -> np.ndarray:
        """Sum the LoRA gradients and the step's metric sums over ranks."""
        if self.world == 1:
            return sums
        import torch
        import torch.distributed as td

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            td.all_reduce(p.grad)
        t = torch.tensor(sums, dtype=torch.float64, device=params[0].device)
        td.all_reduce(t)
        return t.cpu().numpy()

    def gather_seqs(self, seqs: list[Seq], stats: list[float]) -> tuple[list[Seq], list[float]]:
        """Every rank gets every rank's sampled sequences (in rank order) and the summed stats."""
        if self.world == 1:
            return seqs, stats
        import torch.distributed as td

        parts: list[Any] = [None] * self.world
        td.all_gather_object(parts, (seqs, stats))
        return [s for p in parts for s in p[0]], np.sum([p[1] for p in parts], axis=0).tolist()
