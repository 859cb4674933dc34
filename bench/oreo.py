"""OREO in the shared trainer: peak memory and training speed per micro-batch size.

    python bench/oreo.py [--model runs/models/smollm2-135m-instruct | --tiny] [--micro-batch-tokens 4096,512]
                         [--steps 3] [--trajectories 4] [--actions 3] [--prompt-tokens 200]
                         [--action-tokens 24] [--obs-tokens 30] [--level token|step] [--lora-rank 16]
                         [--threads 0] [--out bench/results/oreo.json]

The model is a local transformers folder; the default, SmolLM2-135M-Instruct, is made by
`swirl make-model smollm2-135m-instruct runs/models/smollm2-135m-instruct` (~35 s, no download). `--tiny` uses
swirl.models.tiny instead (seconds; the smoke test tests/bench/test_oreo.py runs, not a measurement).

Each `--micro-batch-tokens` value runs in its own subprocess, so that each has its own peak: the trainer
the train stage runs (`swirl.training.loop.train`, objective oreo: one frozen base, the policy's adapter, the
value adapter and head; the reference is the base with the adapters disabled), float32 on the CPU, for
`--steps` optimizer steps of `--trajectories` synthetic trajectories (seeded random token ids: a prompt, then
`--actions` x (action + observation), no observation after the last action; R = 1 for every other
trajectory). Nothing of OREO is re-implemented here: a change to the trainer is measured as it is.

Figures: the subprocess's peak RSS (swirl.system.peak_rss_bytes) and its RSS after the imports (what any run
pays for Python, torch and transformers), the base's parameters, the trainable parameters (policy adapter,
value adapter and head, as saved), the trainer's processed (non-padding) and trained (action) tokens/s over
the steps after the first (the first allocates AdamW's state), and each step's losses from the trainer's log.
Prints a table and writes bench/results/oreo.{json,md}.

The comparison of this one-base design with the paper's three separate model copies (docs/results.md) was
measured by this script's earlier version, which re-implemented OREO's loss for the copies:
`git show 2d75042:bench/oreo.py`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

DEFAULT_MODEL = "runs/models/smollm2-135m-instruct"
LOSSES = ("value_loss", "policy_loss", "kl")


def train_config(args: Any, micro_batch_tokens: int) -> Any:
    """The trainer's config for these runs: oreo, float32, the LoRA shape, a constant rate, no checkpoint but
    the last."""
    from swirl.training.config import LoraSection, OreoSection, TrainConfig

    return TrainConfig(
        objective="oreo",
        dtype="float32",
        batch_size=args.trajectories,
        max_steps=args.steps,
        learning_rate=args.learning_rate,
        schedule="constant",
        lora=LoraSection(rank=args.lora_rank, alpha=2 * args.lora_rank),
        oreo=OreoSection(level=args.level),
        seed=args.seed,
        micro_batch_tokens=micro_batch_tokens,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
    )


def make_examples(args: Any, vocab: int) -> list[Any]:
    """`--steps` x `--trajectories` synthetic trajectories (seeded): prompt, then actions with observations
    between them; every action weighted by R = 1 (even trajectories) or 0 (odd ones)."""
    import numpy as np

    from swirl.training.batches import Example

    rng = np.random.default_rng(args.seed)
    out = []
    for i in range(args.steps * args.trajectories):
        pos, spans = args.prompt_tokens, []
        for a in range(args.actions):
            spans.append((pos, pos + args.action_tokens))
            pos += args.action_tokens + (args.obs_tokens if a < args.actions - 1 else 0)
        ids = rng.integers(100, vocab, size=pos).astype(np.int32)  # past the special tokens
        r = 1.0 if i % 2 == 0 else 0.0
        out.append(Example(f"bench-{i}", ids, spans, list(range(args.actions)), [r] * args.actions, i))
    return out


def _parameters(folder: str) -> int:
    """Parameters in the safetensors files of `folder` (and its sub-folders)."""
    from safetensors import safe_open

    n = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".safetensors"):
                with safe_open(os.path.join(root, name), "pt") as f:
                    n += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return n


def run_worker(args: Any, micro_batch_tokens: int) -> dict[str, Any]:
    """One run of the trainer in this process; its figures."""
    # every import a run needs before any weight is loaded, so that the RSS after them is a common floor
    import peft  # noqa: F401
    import torch
    from transformers import AutoConfig
    from transformers.utils import logging as hf_logging

    from swirl.system import peak_rss_bytes, rss_bytes
    from swirl.training.data import TrainData
    from swirl.training.loop import train

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_imports = rss_bytes()
    cfg = train_config(args, micro_batch_tokens)
    examples = make_examples(args, AutoConfig.from_pretrained(args.model_path).vocab_size)
    with tempfile.TemporaryDirectory() as out_dir:
        log = train(cfg, args.model_path, TrainData(examples=examples), out_dir).log
        trainable = _parameters(os.path.join(out_dir, "adapter")) + _parameters(
            os.path.join(out_dir, "value")
        )
    timed = log[1:] or log  # the first step allocates AdamW's state
    seconds = sum(m["tokens"] / m["tokens_per_s"] for m in timed)  # the trainer's forward/backward/step time
    return {
        "micro_batch_tokens": micro_batch_tokens,
        "micro_batches_per_step": log[0]["micro_batches"],
        "base_parameters": _parameters(args.model_path),
        "trainable_parameters": trainable,
        "rss_after_imports_bytes": rss_imports,
        "peak_rss_bytes": peak_rss_bytes(),
        "timed_steps": len(timed),
        "processed_tokens_per_s": round(sum(m["tokens"] for m in timed) / seconds, 1),
        "trained_tokens_per_s": round(sum(m["trained_tokens"] for m in timed) / seconds, 1),
        "seconds_per_step": round(sum(m["seconds"] for m in timed) / len(timed), 3),
        "steps": [{"step": m["step"], **{k: m[k] for k in LOSSES}} for m in log],
        "torch_threads": torch.get_num_threads(),
    }


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


HEADERS = [
    "micro-batch tokens",
    "micro-batches / step",
    "peak RSS MiB",
    "peak RSS above imports MiB",
    "base / trainable parameters",
    "processed tok/s",
    "trained tok/s",
    "s / step",
    "last step: value / policy loss / KL",
]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for r in rows:
        last = r["steps"][-1]
        out.append(
            [
                str(r["micro_batch_tokens"]),
                str(r["micro_batches_per_step"]),
                _mib(r["peak_rss_bytes"]),
                _mib(r["peak_rss_bytes"] - r["rss_after_imports_bytes"]),
                f"{r['base_parameters'] / 1e6:.1f}M / {r['trainable_parameters'] / 1e6:.2f}M",
                f"{r['processed_tokens_per_s']:,.0f}",
                f"{r['trained_tokens_per_s']:,.0f}",
                f"{r['seconds_per_step']:.2f}",
                " / ".join(f"{last[k]:.5f}" for k in LOSSES),
            ]
        )
    return out


def markdown(title: str, rows: list[list[str]], notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([*lines, "", *notes]) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="a local transformers causal-LM folder")
    ap.add_argument("--tiny", action="store_true", help="the tiny model (a smoke test, not a measurement)")
    ap.add_argument(
        "--micro-batch-tokens",
        default="4096,512",
        help="comma-separated train.micro_batch_tokens values, one run each (fewer: less activation memory)",
    )
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps (the first is not timed)")
    ap.add_argument("--trajectories", type=int, default=4, help="trajectories per optimizer step")
    ap.add_argument("--actions", type=int, default=3, help="actions per trajectory")
    ap.add_argument("--prompt-tokens", type=int, default=200)
    ap.add_argument("--action-tokens", type=int, default=24)
    ap.add_argument(
        "--obs-tokens", type=int, default=30, help="observation tokens after every action but the last"
    )
    ap.add_argument("--level", default="token", choices=["token", "step"])
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--learning-rate", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "oreo.json")
    )
    ap.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # internal: one run, JSON out
    ap.add_argument("--worker-out", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> int:
    args = parse_args()
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
            json.dump(run_worker(args, args.worker), f)
        return 0

    sizes = [int(s) for s in args.micro_batch_tokens.split(",") if s.strip()]
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            out = os.path.join(tmp, f"{size}.json")
            cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", str(size)]
            t0 = time.perf_counter()
            subprocess.run([*cmd, "--worker-out", out], check=True)
            with open(out) as f:
                rows.append(json.load(f))
            print(
                f"micro-batches of {size} tokens: {time.perf_counter() - t0:.0f} s in its subprocess",
                flush=True,
            )
    report(args, described, rows, time.perf_counter() - t_all)
    return 0


def report(args: Any, described: str, rows: list[dict[str, Any]], total_s: float) -> None:
    """Print the table and write the JSON and Markdown results."""
    import torch
    from rich.console import Console
    from rich.table import Table

    tokens = args.prompt_tokens + args.actions * args.action_tokens + (args.actions - 1) * args.obs_tokens
    title = (
        f"OREO in the shared trainer (one base, two adapters); {described}, float32, CPU; {args.steps} "
        f"steps of {args.trajectories} trajectories ({tokens} tokens, {args.actions} actions of "
        f"{args.action_tokens}), {args.level} level, LoRA r={args.lora_rank}"
    )
    notes = [
        "- peak RSS: the run's subprocess's high-water resident memory (VmHWM), including Python, torch and "
        "transformers; 'above imports' subtracts its RSS after the imports, before any weight is loaded.",
        f"- tok/s over steps 2..{args.steps} (the first allocates AdamW's state), the trainer's own timing; "
        "processed = non-padding tokens through the model, trained = action tokens (the loss positions).",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{rows[0]['torch_threads']} threads; total {total_s:.0f} s.",
    ]
    trs = table_rows(rows)
    t = Table(title=title)
    for h in HEADERS:
        t.add_column(h, justify="right")
    for r in trs:
        t.add_row(*r)
    console = Console(width=max(Console().width, 160))
    console.print(t)
    for n in notes:
        console.print(n)
    result = {
        "model": described,
        "settings": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
        "runs": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    write_result(result, args.out, markdown(title, trs, notes))


if __name__ == "__main__":
    sys.exit(main())
