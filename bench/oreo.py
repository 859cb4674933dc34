"""OREO's shared-base design vs separate model copies: peak memory and training speed for the same steps.

    python bench/oreo.py [--model runs/models/smollm2-135m-instruct | --tiny]
                         [--designs shared,separate,separate_full] [--steps 3] [--trajectories 4]
                         [--actions 3] [--prompt-tokens 200] [--action-tokens 24] [--obs-tokens 30]
                         [--micro-batch-tokens 4096]
                         [--level token|step] [--lora-rank 16] [--threads 0] [--out bench/results/oreo.json]

The model is a local transformers folder; the default, SmolLM2-135M-Instruct, is made by
`swirl make-model smollm2-135m-instruct runs/models/smollm2-135m-instruct` (~35 s, no download). `--tiny` uses
swirl.models.tiny instead (seconds; a smoke test of the script, not a measurement).

Designs, each in its own subprocess (so each has its own peak RSS), float32 on the CPU:

    shared          what the trainer builds (swirl/models/value.py, `Oreo.build`): one frozen base, the
                    policy's LoRA adapter `default`, the value adapter `value` and the value head; the
                    reference policy is the base with the adapters disabled. The trainer's own micro-batch
                    loss (`oreo_micro_batch`).
    separate        the paper's layout: three full copies of the base weights, a policy (with its LoRA), a
                    value model (its LoRA and the head) and a frozen reference. The same trainable weights,
                    started from the same values, and the same loss functions of swirl/training/oreo.py
                    (`separate_micro_batch`), so every step's losses match the shared design's up to float
                    rounding: the difference is the memory of the two extra copies. This is the baseline of
                    the ratios.
    separate_full   the paper's training as well: the policy and the value model fine-tune all their
                    weights (started from the same function: the same LoRA weights merged in), so step 1's
                    losses match and later steps differ (another parametrisation).

All designs train on the same synthetic trajectories (random token ids: a prompt, then `--actions` x (action
+ observation), no observation after the last action; R = 1 for every other trajectory), `--trajectories` per
optimizer step, with the same micro-batches, AdamW over two parameter groups (policy, value) each clipped on
its own, as the trainer does. LoRA and value-head weights start from seeded random values (a function of each
weight's name and role), not the trainer's zero init, so that the policy differs from the reference and V
from 0 and the step-1 loss check means something.

Figures: peak RSS of the subprocess (resource.getrusage) and its RSS after the imports (what every design
pays for Python, torch and transformers), the bytes of the weights held (each storage once), trainable
parameters, AdamW state, processed (non-padding) tokens/s and trained (action) tokens/s over the steps after
the first (the first allocates the optimizer state), and each step's losses; the ratios are against
`separate`. Prints a table and writes bench/results/oreo.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DESIGNS = ("shared", "separate", "separate_full")
BASELINE = "separate"
DEFAULT_MODEL = "runs/models/smollm2-135m-instruct"
LORA_B_STD = 0.02  # the seeded start of every LoRA B (A: peft's uniform range) and of the value head
HEAD_STD = 0.02


@dataclass
class Design:
    """One way to hold OREO's three models: what is in memory, what trains, and the micro-batch loss."""

    name: str
    modules: list[Any]  # every module holding weights (for the parameter accounting)
    groups: list[tuple[str, list[Any], float]]  # (name, parameters, learning rate): policy, value
    loss: Callable[[Any], Any]  # MicroBatch -> OreoParts
    pad_id: int


def train_config(args: Any) -> Any:
    """The trainer's config for these runs (float32, the LoRA shape, OREO's defaults, no schedule)."""
    from swirl.training.config import LoraSection, OreoSection, TrainConfig

    return TrainConfig(
        objective="oreo",
        dtype="float32",
        batch_size=args.trajectories,
        learning_rate=args.learning_rate,
        schedule="constant",
        lora=LoraSection(rank=args.lora_rank, alpha=2 * args.lora_rank),
        oreo=OreoSection(level=args.level),
        seed=args.seed,
        micro_batch_tokens=args.micro_batch_tokens,
    )


# ------------------------------------------------------------------------------------- seeded starts
def _start_values(p: Any, key: str) -> None:
    """Overwrite `p` with values that depend only on `key` (the same in every design and process)."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    with torch.no_grad():
        if "lora_A" in key:
            bound = 1.0 / p.shape[1] ** 0.5
            p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32).mul_(2 * bound).sub_(bound))
        else:  # lora_B, the value head
            std = HEAD_STD if key.startswith("value:value_head") else LORA_B_STD
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(std))


def seed_adapters(model: Any, role: str | None = None) -> None:
    """Seeded starts for a model's LoRA weights and value head. `role`: policy or value for a model with
    one adapter (the separate copies); None for the shared model, whose adapter names say the role."""
    for name, p in model.named_parameters():
        if "lora_" not in name and not name.startswith("value_head"):
            continue
        r = role or ("value" if ".value." in name or name.startswith("value_head") else "policy")
        canonical = re.sub(r"\.(default|value)\.", ".", name.removeprefix("base_model.model."))
        _start_values(p, f"{r}:{canonical}")


# --------------------------------------------------------------------------------------- the designs
def build_shared(model_path: str, cfg: Any) -> Design:
    """The trainer's own model: `build_policy`, then `Oreo.build` (value adapter + head), then seeded
    starts; the loss is `Oreo.loss` (`oreo_micro_batch`)."""
    from swirl.training.loop import Dist, build_policy
    from swirl.training.objectives import Oreo

    objective = Oreo()
    model, tok, _ = build_policy(cfg, model_path, Dist())
    groups = objective.build(model, cfg)
    seed_adapters(model)
    model.train()
    return Design(
        "shared",
        [model],
        groups,
        lambda mb: _oreo_parts(model, mb, cfg),
        tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )


def _oreo_parts(model: Any, mb: Any, cfg: Any) -> Any:
    from swirl.training.oreo import oreo_micro_batch

    o = cfg.oreo
    return oreo_micro_batch(model, mb, o.beta, o.kl_alpha, o.level)


@dataclass
class SeparateModels:
    """The paper's three models, each a full copy of the weights: policy, value model + head, reference."""

    policy: Any
    value: Any
    head: Any
    reference: Any


def build_separate_models(model_path: str, cfg: Any, full: bool) -> SeparateModels:
    """Three copies of the base: the policy and the value model with their LoRA adapters (the same seeded
    starts as the shared model's) or, `full`, with those adapters merged in and every weight trainable; the
    reference frozen."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    def load() -> Any:
        return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)

    lora = cfg.lora.peft_config()
    reference = load().requires_grad_(False).eval()
    policy = get_peft_model(load(), lora)
    seed_adapters(policy, "policy")
    value = get_peft_model(load(), lora)
    seed_adapters(value, "value")
    head = torch.nn.Linear(value.get_base_model().config.hidden_size, 1, bias=False, dtype=torch.float32)
    _start_values(head.weight, "value:value_head.weight")
    if full:
        policy = policy.merge_and_unload().requires_grad_(True)
        value = value.merge_and_unload().requires_grad_(True)
    return SeparateModels(policy.train(), value.train(), head, reference)


def build_separate(model_path: str, cfg: Any, full: bool) -> Design:
    from transformers import AutoTokenizer

    m = build_separate_models(model_path, cfg, full)
    policy = [p for p in m.policy.parameters() if p.requires_grad]
    value = [p for p in m.value.parameters() if p.requires_grad] + list(m.head.parameters())
    o = cfg.oreo
    tok = AutoTokenizer.from_pretrained(model_path)
    return Design(
        "separate_full" if full else "separate",
        [m.policy, m.value, m.head, m.reference],
        [("policy", policy, cfg.learning_rate), ("value", value, o.value_learning_rate or cfg.learning_rate)],
        lambda mb: separate_micro_batch(m, mb, o.beta, o.kl_alpha, o.level),
        tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )


def separate_micro_batch(m: SeparateModels, mb: Any, beta: float, alpha: float, level: str) -> Any:
    """`oreo_micro_batch` with three models instead of three views of one: the same positions (pi(.|s_t) and
    V(s_t) read at p - 1) and the same loss functions of swirl/training/oreo.py."""
    import torch

    from swirl.models.value import prefix_values
    from swirl.training.losses import lm_parts
    from swirl.training.oreo import oreo_losses

    def logp_at(model: Any) -> Any:
        decoder, lm_head = lm_parts(model)
        hidden = decoder(input_ids=mb.input_ids, attention_mask=mb.attention_mask).last_hidden_state
        return torch.log_softmax(lm_head(hidden[mb.row, mb.pos - 1]).float(), -1)  # [N, V]

    with torch.no_grad():
        ref_logp = logp_at(m.reference)
    logp = logp_at(m.policy)
    values = prefix_values(m.value, m.head, mb.input_ids, mb.attention_mask, mb.row, mb.pos)  # [N] V(s_t)
    return oreo_losses(mb, logp, ref_logp, values, beta, alpha, level)


def build_design(name: str, model_path: str, cfg: Any) -> Design:
    if name == "shared":
        return build_shared(model_path, cfg)
    if name in ("separate", "separate_full"):
        return build_separate(model_path, cfg, full=name == "separate_full")
    raise ValueError(f"unknown design {name!r}; choose from {DESIGNS}")


# ------------------------------------------------------------------------------------- data and steps
def make_examples(args: Any, vocab: int, n: int) -> list[Any]:
    """`n` synthetic trajectories (seeded): prompt, then actions with observations between them; R = 1 for
    even ones, 0 for odd ones."""
    import numpy as np

    from swirl.training.batches import Example

    rng = np.random.default_rng(args.seed)
    out = []
    for i in range(n):
        pos, spans = args.prompt_tokens, []
        for a in range(args.actions):
            spans.append((pos, pos + args.action_tokens))
            pos += args.action_tokens + (args.obs_tokens if a < args.actions - 1 else 0)
        ids = rng.integers(100, vocab, size=pos).astype(np.int32)  # past the special tokens
        r = 1.0 if i % 2 == 0 else 0.0
        out.append(Example(f"bench-{i}", ids, spans, list(range(args.actions)), [r] * args.actions, i))
    return out


def step_micro_batches(examples: list[Any], cfg: Any, pad_id: int) -> list[Any]:
    """One optimizer step's micro-batches, as the trainer builds them for oreo."""
    from swirl.training.batches import micro_batches, prefix_shared
    from swirl.training.objectives import Oreo

    seqs = Oreo().coefficients(prefix_shared(examples), cfg)
    return micro_batches(seqs, cfg.micro_batch_tokens, pad_id)


def make_optimizer(design: Design, cfg: Any) -> Any:
    import torch

    return torch.optim.AdamW(
        [{"params": ps, "lr": lr} for _, ps, lr in design.groups],
        lr=cfg.learning_rate,
        betas=cfg.adam_betas,
        weight_decay=cfg.weight_decay,
    )


def train_step(design: Design, opt: Any, mbs: list[Any], cfg: Any) -> dict[str, float]:
    """Forward and backward over the step's micro-batches, each group clipped on its own, AdamW; the step's
    summed losses."""
    import torch

    sums = dict.fromkeys(("value_loss", "policy_loss", "kl", "value_mean", "logratio_mean"), 0.0)
    for mb in mbs:
        part = design.loss(mb)
        part.loss.backward()
        for k in sums:
            sums[k] += getattr(part, k)
    for _, ps, _ in design.groups:
        torch.nn.utils.clip_grad_norm_(ps, cfg.max_grad_norm or float("inf"))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return sums


def _bytes(tensors: Any) -> int:
    """Bytes of the storages under `tensors`, each counted once (tied and shared weights)."""
    seen, total = set(), 0
    for t in tensors:
        s = t.untyped_storage()
        if s.data_ptr() not in seen:
            seen.add(s.data_ptr())
            total += s.nbytes()
    return total


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_worker(design_name: str, args: Any) -> dict[str, Any]:
    """One design in this process: build, train `args.steps` steps, measure."""
    # the imports every design pays before any weight is loaded, so that RSS after them is a common floor
    import peft  # noqa: F401
    import psutil
    import torch
    from transformers import AutoModelForCausalLM  # noqa: F401
    from transformers.utils import logging as hf_logging

    import swirl.training.loop  # noqa: F401
    import swirl.training.oreo  # noqa: F401

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    proc = psutil.Process()
    rss_imports = proc.memory_info().rss
    cfg = train_config(args)
    design = build_design(design_name, args.model_path, cfg)
    rss_built = proc.memory_info().rss
    params = [p for m in design.modules for p in m.parameters()]
    trainable = [p for _, ps, _ in design.groups for p in ps]
    vocab = design.modules[0].config.vocab_size
    examples = make_examples(args, vocab, args.steps * args.trajectories)
    opt = make_optimizer(design, cfg)
    steps, timed = [], {"seconds": 0.0, "processed": 0, "trained": 0}
    for s in range(args.steps):
        mbs = step_micro_batches(
            examples[s * args.trajectories : (s + 1) * args.trajectories], cfg, design.pad_id
        )
        t0 = time.perf_counter()
        sums = train_step(design, opt, mbs, cfg)
        dt = time.perf_counter() - t0
        steps.append({"step": s + 1, "seconds": round(dt, 3), **sums})
        if s > 0 or args.steps == 1:  # the first step allocates AdamW's state
            timed["seconds"] += dt
            timed["processed"] += sum(mb.real_tokens for mb in mbs)
            timed["trained"] += sum(len(mb.pos) for mb in mbs)
        print(f"{design_name}: step {s + 1}/{args.steps} {dt:.1f} s", file=sys.stderr, flush=True)
    state = [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]
    return {
        "design": design_name,
        "models_in_memory": {"shared": 1, "separate": 3, "separate_full": 3}[design_name],
        "weights_bytes": _bytes(params),
        "parameters": sum(p.numel() for p in {p.data_ptr(): p for p in params}.values()),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "adam_state_bytes": _bytes(state),
        "rss_after_imports_bytes": rss_imports,
        "rss_after_build_bytes": rss_built,
        "peak_rss_bytes": _peak_rss(),
        "timed_steps": max(args.steps - 1, 1),
        "timed_seconds": round(timed["seconds"], 3),
        "processed_tokens_per_s": round(timed["processed"] / timed["seconds"], 1),
        "trained_tokens_per_s": round(timed["trained"] / timed["seconds"], 1),
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------------- report
LOSS_KEYS = ("value_loss", "policy_loss", "kl")


def loss_check(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each design's largest |loss difference| with the shared design, on step 1 and over every step."""
    ref = rows.get("shared")
    out = {}
    for name, r in rows.items():
        if ref is None or name == "shared":
            continue

        def diff(steps: list[dict[str, Any]]) -> float:
            pairs = zip(ref["steps"][: len(steps)], steps, strict=True)
            return max(abs(a[k] - b[k]) for a, b in pairs for k in LOSS_KEYS)

        out[name] = {
            "step1_max_abs_diff": diff(r["steps"][:1]),
            "all_steps_max_abs_diff": diff(r["steps"]),
        }
    return out


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


SAME_LOSS_TOL = 1e-4  # float32 losses of order 1: the designs differ by rounding only


def _same_losses(name: str, c: dict[str, Any] | None) -> str:
    if c is None:
        return "-"
    verdict = "yes" if c["step1_max_abs_diff"] < SAME_LOSS_TOL else "NO"
    every = f"; all steps {c['all_steps_max_abs_diff']:.1e}" if name == BASELINE else ""
    return f"{verdict} (max abs diff {c['step1_max_abs_diff']:.1e}{every})"


def table_rows(rows: dict[str, dict[str, Any]], checks: dict[str, dict[str, Any]]) -> list[list[str]]:
    base = rows.get(BASELINE)
    out = []
    for name, r in rows.items():
        above = r["peak_rss_bytes"] - r["rss_after_imports_bytes"]

        def ratio(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key] / base[key]:.2f}x" if base else "-"

        if base:
            base_above = base["peak_rss_bytes"] - base["rss_after_imports_bytes"]
            above_ratio = f"{above / base_above:.2f}x"
        else:
            above_ratio = "-"
        s1 = r["steps"][0]
        same = "reference" if name == "shared" else _same_losses(name, checks.get(name))
        out.append(
            [
                name,
                str(r["models_in_memory"]),
                _mib(r["weights_bytes"]),
                f"{r['trainable_parameters'] / 1e6:.2f}M",
                _mib(r["adam_state_bytes"]),
                f"{_mib(r['peak_rss_bytes'])} ({ratio('peak_rss_bytes')})",
                f"{_mib(above)} ({above_ratio})",
                f"{r['processed_tokens_per_s']:,.0f} ({ratio('processed_tokens_per_s')})",
                f"{r['trained_tokens_per_s']:,.0f}",
                f"{s1['value_loss']:.5f} / {s1['policy_loss']:.5f} / {s1['kl']:.5f}",
                same,
            ]
        )
    return out


HEADERS = [
    "design",
    "base copies",
    "weights MiB",
    "trainable",
    "AdamW state MiB",
    f"peak RSS MiB (vs {BASELINE})",
    "peak RSS above imports MiB",
    "processed tok/s",
    "trained tok/s",
    "step 1: value / policy loss / KL",
    "step-1 losses = shared's",
]


def markdown(title: str, rows: list[list[str]], notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([*lines, "", *notes]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a local transformers causal-LM folder")
    ap.add_argument("--tiny", action="store_true", help="the tiny model (a smoke test, not a measurement)")
    ap.add_argument("--designs", default=",".join(DESIGNS))
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps (the first is not timed)")
    ap.add_argument("--trajectories", type=int, default=4, help="trajectories per optimizer step")
    ap.add_argument("--actions", type=int, default=3, help="actions per trajectory")
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--action-tokens", type=int, default=24)
    ap.add_argument(
        "--obs-tokens", type=int, default=30, help="observation tokens after every action but the last"
    )
    ap.add_argument(
        "--micro-batch-tokens",
        type=int,
        default=4096,
        help="padded tokens per forward/backward (train.micro_batch_tokens); fewer = less activation memory",
    )
    ap.add_argument("--level", default="token", choices=["token", "step"])
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--learning-rate", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "oreo.json")
    )
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)  # internal: run one design, write JSON
    ap.add_argument("--worker-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    if args.tiny:
        from swirl.models.tiny import build_tiny_model

        args.model_path = build_tiny_model(os.path.join(tempfile.gettempdir(), "swirl-bench-tiny"))
        described = "tiny (swirl.models.tiny)"
    else:
        if not os.path.exists(os.path.join(args.model, "config.json")):
            print(
                f"{args.model}: no model; make it with `swirl make-model smollm2-135m-instruct {args.model}`",
                file=sys.stderr,
            )
            return 2
        args.model_path = described = args.model

    if args.worker:
        with open(args.worker_out, "w") as f:
            json.dump(run_worker(args.worker, args), f)
        return 0

    names = [d.strip() for d in args.designs.split(",") if d.strip()]
    rows: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = os.path.join(tmp, f"{name}.json")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                *sys.argv[1:],
                "--worker",
                name,
                "--worker-out",
                out,
            ]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            with open(out) as f:
                rows[name] = json.load(f)
            print(f"{name}: {time.perf_counter() - t0:.0f} s in its subprocess", flush=True)
    checks = loss_check(rows)

    import torch

    tokens = args.prompt_tokens + args.actions * args.action_tokens + (args.actions - 1) * args.obs_tokens
    title = (
        f"OREO's three models: one shared base vs separate copies; {described}, float32, CPU; "
        f"{args.steps} steps of {args.trajectories} trajectories ({tokens} tokens, {args.actions} actions of "
        f"{args.action_tokens}), micro-batches of {args.micro_batch_tokens} tokens, {args.level} level, "
        f"LoRA r={args.lora_rank}"
    )
    notes = [
        f"- Ratios against `{BASELINE}` (three full copies, the same LoRA training: the same losses at "
        "every step). `separate_full` also fine-tunes every weight of the policy and the value model, as "
        "the paper does.",
        "- peak RSS: the subprocess's maximum resident memory (getrusage), including Python, torch and "
        "transformers; 'above imports' subtracts the RSS after the imports, before any weight is loaded.",
        f"- tok/s over steps 2..{args.steps} (the first allocates AdamW's state); processed = non-padding "
        "tokens through the model, trained = action tokens (the loss positions).",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{rows[names[0]]['torch_threads']} threads; total {time.perf_counter() - t_all:.0f} s.",
    ]
    trs = table_rows(rows, checks)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in HEADERS:
        t.add_column(h, justify="right")
    for r in trs:
        t.add_row(*r)
    console = Console(width=max(Console().width, 200))
    console.print(t)
    for n in notes:
        console.print(n)
    result = {
        "model": described,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
        "baseline": BASELINE,
        "loss_check": checks,
        "designs": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(markdown(title, trs, notes))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
