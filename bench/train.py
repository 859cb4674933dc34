"""Training throughput: prefix-shared batches vs the naive expansion (one sequence per action), LoRA + AdamW.

    python bench/train.py [--k 2 5 10] [--trajectories 64] [--prompt-tokens 150] [--action-tokens 48]
                          [--obs-tokens 60] [--micro-batch-tokens 4096] [--step-trajectories 16]
                          [--model FOLDER | --config tiny|qwen2-0.5b] [--device cpu|cuda]
                          [--dtype float32|bfloat16]

For each K (actions per trajectory, all kept), `--trajectories` synthetic trajectories of
`prompt + K x (action + observation)` tokens (no observation after the last action) are trained for one epoch:
optimizer steps of `--step-trajectories` trajectories, each a gradient accumulation over micro-batches of at
most `--micro-batch-tokens` padded tokens, then one AdamW step on the LoRA weights. Once with `prefix_shared`
batches (one row per trajectory) and once with `naive_expand` batches (one row per action), with the same
micro-batch budget; one untimed warm-up step precedes each timed epoch. Figures: trained (action) tokens/s,
processed (non-pad) tokens/s, wall seconds per epoch, and the speed-up naive / prefix wall time per K, all
from the same run.

`--config qwen2-0.5b` builds a random Qwen2 with the 0.5B shapes (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocab 151936) from `Qwen2Config` (nothing downloaded): use it with `--device cuda --dtype
bfloat16`. Prints a table and writes bench/results/train.json. Target: prefix-shared >= 2x faster at K = 5.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

TARGET_K, TARGET_SPEEDUP = 5, 2.0
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_model(args):
    """(model with a fresh LoRA adapter, description) on args.device in args.dtype."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    if args.model or args.config == "tiny":
        from swirl.models.tiny import build_tiny_model

        path = args.model or build_tiny_model(os.path.join(tempfile.gettempdir(), "swirl-bench-tiny"))
        base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(args.device)
        name = args.model or "tiny (swirl.models.tiny)"
    else:  # qwen2-0.5b shapes, random weights
        cfg = Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            rope_theta=1_000_000.0,
            tie_word_embeddings=True,
            use_sliding_window=False,
            pad_token_id=151643,
            bos_token_id=151643,
            eos_token_id=151645,
        )
        with torch.device(args.device):
            base = Qwen2ForCausalLM(cfg).to(dtype)
        name = "random Qwen2 with 0.5B shapes"
    base.config.use_cache = False
    lora = LoraConfig(
        r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0, target_modules=LORA_TARGETS
    )
    model = get_peft_model(base, lora)
    model.train()  # dropout is 0 in Qwen2 and LoRA: train mode changes nothing numerically
    n_all = sum(p.numel() for p in model.parameters())
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (
        model,
        f"{name}: {n_all / 1e6:.1f}M parameters, LoRA r={args.lora_rank} {n_lora / 1e6:.2f}M trainable",
    )


def make_examples(k: int, args, vocab: int, rng: np.random.Generator):
    from swirl.training.batches import Example

    out = []
    for i in range(args.trajectories):
        pos, spans = args.prompt_tokens, []
        for a in range(k):
            spans.append((pos, pos + args.action_tokens))
            pos += args.action_tokens + (args.obs_tokens if a < k - 1 else 0)
        ids = rng.integers(0, vocab, size=pos).astype(np.int32)
        out.append(Example(f"bench-{k}-{i}", ids, spans, list(range(k)), [1.0] * k, group=i))
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_step(model, opt, examples, layout, args, stats: dict) -> None:
    """One optimizer step: build the step's sequences, accumulate gradients over its micro-batches, AdamW."""
    from swirl.training.batches import assign_coefficients, micro_batches
    from swirl.training.losses import micro_batch_loss

    seqs = layout(examples)
    assign_coefficients(seqs, args.aggregation)
    for mb in micro_batches(seqs, args.micro_batch_tokens, model.config.pad_token_id or 0, args.device):
        micro_batch_loss(model, mb).loss.backward()
        stats["rows"] += len(mb.input_ids)
        stats["micro_batches"] += 1
        stats["trained_tokens"] += len(mb.pos)
        stats["processed_tokens"] += mb.real_tokens
        stats["padded_tokens"] += mb.padded_tokens
    opt.step()
    opt.zero_grad(set_to_none=True)


def run_epoch(model, examples, layout, args) -> dict:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    step = args.step_trajectories
    warm = {"rows": 0, "micro_batches": 0, "trained_tokens": 0, "processed_tokens": 0, "padded_tokens": 0}
    # warm-up (kernels, allocator, optimizer state)
    train_step(model, opt, examples[:step], layout, args, warm)
    _sync(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stats = dict.fromkeys(warm, 0)
    t0 = time.perf_counter()
    for i in range(0, len(examples), step):
        train_step(model, opt, examples[i : i + step], layout, args, stats)
    _sync(args.device)
    dt = time.perf_counter() - t0
    stats.update(
        optimizer_steps=-(-len(examples) // step),
        epoch_s=round(dt, 3),
        trained_tokens_per_s=round(stats["trained_tokens"] / dt, 1),
        processed_tokens_per_s=round(stats["processed_tokens"] / dt, 1),
    )
    if args.device.startswith("cuda"):
        stats["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[2, 5, 10], help="actions per trajectory")
    ap.add_argument("--trajectories", type=int, default=64, help="trajectories per epoch")
    ap.add_argument("--prompt-tokens", type=int, default=150)
    ap.add_argument("--action-tokens", type=int, default=48)
    ap.add_argument(
        "--obs-tokens",
        type=int,
        default=60,
        help="observation/template tokens after every action but the last",
    )
    ap.add_argument(
        "--micro-batch-tokens", type=int, default=4096, help="padded tokens per micro-batch (both layouts)"
    )
    ap.add_argument("--step-trajectories", type=int, default=16, help="trajectories per optimizer step")
    ap.add_argument("--aggregation", default="token", choices=["token", "action", "sequence"])
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument(
        "--model", default="", help="a local transformers causal-LM folder (default: the tiny model)"
    )
    ap.add_argument(
        "--config",
        default="tiny",
        choices=["tiny", "qwen2-0.5b"],
        help="model when --model is not given: the tiny model or a random Qwen2 with 0.5B shapes",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "train.json")
    )
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers.utils import logging as hf_logging

    from swirl.training.batches import naive_expand, prefix_shared

    hf_logging.disable_progress_bar()

    if args.threads:
        torch.set_num_threads(args.threads)
    model, described = build_model(args)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(args.seed)
    rows, speedups = [], {}
    for k in args.k:
        examples = make_examples(k, args, vocab, rng)
        per = {}
        for name, layout in (("prefix", prefix_shared), ("naive", naive_expand)):
            per[name] = run_epoch(model, examples, layout, args)
            rows.append(
                {"K": k, "layout": name, "trajectory_tokens": len(examples[0].token_ids), **per[name]}
            )
        speedups[k] = round(per["naive"]["epoch_s"] / per["prefix"]["epoch_s"], 2)
        rows[-2]["speedup"] = speedups[k]
        rows[-1]["speedup"] = 1.0

    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    )
    cols = [
        "K",
        "layout",
        "trajectory_tokens",
        "rows",
        "micro_batches",
        "trained_tokens",
        "processed_tokens",
        "padded_tokens",
        "epoch_s",
        "trained_tokens_per_s",
        "processed_tokens_per_s",
        "speedup",
    ]
    if args.device.startswith("cuda"):
        cols.append("peak_gpu_memory_gb")
    t = Table(
        title=f"one epoch of LoRA training, {args.trajectories} trajectories (prompt {args.prompt_tokens}, "
        f"actions {args.action_tokens}, observations {args.obs_tokens} tokens), micro-batches of "
        f"{args.micro_batch_tokens} tokens, {args.dtype} on {args.device}"
    )
    heads = {
        "trajectory_tokens": "traj tokens",
        "micro_batches": "micro-batches",
        "trained_tokens": "trained tokens",
        "processed_tokens": "processed tokens",
        "padded_tokens": "padded tokens",
        "epoch_s": "epoch s",
        "trained_tokens_per_s": "trained tok/s",
        "processed_tokens_per_s": "processed tok/s",
        "speedup": "speed-up",
        "peak_gpu_memory_gb": "peak GPU GB",
    }
    for c in cols:
        t.add_column(heads.get(c, c), justify="right")
    for r in rows:
        t.add_row(*(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols))
    console = Console(width=max(Console().width, 170))
    console.print(t)
    console.print(f"model: {described}; device: {device}")
    got = speedups.get(TARGET_K)
    console.print(
        "speed-up prefix-shared vs naive (naive s / prefix s): "
        + ", ".join(f"K={k}: {s}x" for k, s in speedups.items())
        + (f" (target >= {TARGET_SPEEDUP}x at K={TARGET_K})" if got is not None else "")
    )
    result = {
        "rows": rows,
        "speedup": {str(k): s for k, s in speedups.items()},
        "target": {"K": TARGET_K, "speedup": TARGET_SPEEDUP},
        "meets_target": None if got is None else got >= TARGET_SPEEDUP,
        "model": described,
        "device": device,
        "settings": vars(args),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
