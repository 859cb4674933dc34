"""Capacity plan of the paper's setting (docs/scale.md): tokens to generate and to judge, GPU-hours, how
shards map to actors, and what grows first at 10x and 100x.

    python scripts/capacity.py [--trajectories 50000] [--steps 3] [--gpus 8] [--tp 1] [--scale 1 10 100]
                               [--out capacity.json]

Every input is a field of `Setting`; each says where its value comes from: the paper (docs/method.md §1), the
shipped real-model config (configs/gsm8k-gemma2-27b.yaml), a published measurement (URL in docs/scale.md), a
vendor spec, or an assumption. Per trajectory of K steps, prompt P, action A, observation O (with the chat
template's tokens), judge instructions J and judge output G:

- generation reads the prefix again at every step: sum_i (P + (i-1)(A+O)) = K P + (A+O) K(K-1)/2 prompt
  tokens; with vLLM's prefix cache only P + (K-1) O of them are computed; it generates K A;
- the judge reads, for every step, its instructions, the prefix and the step: K (J+P+A) + (A+O) K(K-1)/2;
  it writes K G.

GPU-seconds = generated tokens / decode rate + computed prompt tokens / prefill rate. Prints a table; --out
writes the same figures as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    # the paper (docs/method.md §1.1, §1.3, §1.6)
    trajectories: int = 50_000  # 10,000 HotPotQA questions x 5 samples
    samples_per_question: int = 5
    max_steps: int = 5  # HotPotQA's step limit
    step_good_rate: float = 0.825  # mean process label of the base model's own steps (HotPotQA)
    params_b: float = 27.0  # Gemma 2 27B
    # assumptions (no figure published): token counts per trajectory
    steps: float = 3.0  # mean actions per trajectory (limit 5)
    prompt_tokens: int = 250  # instructions + question
    action_tokens: int = 60  # free thought + one tool call
    observation_tokens: int = 250  # one retrieved article + the chat template's turn tokens
    judge_instruction_tokens: int = 250
    judge_output_tokens: int = 150  # explanation + GOOD/BAD
    # SWiRL training: the shipped config's values (the paper publishes none)
    states_per_step: int = 32
    samples_per_state: int = 4
    epochs: float = 1.0
    # throughput of one H100 (docs/scale.md cites the sources)
    decode_tokens_per_s: float = 5_500.0  # published: 22,000 output tok/s on 4 H100, Gemma 3 27B, vLLM
    utilisation: float = 0.5  # assumption: share of that peak a step-synchronous rollout keeps
    peak_tflops: float = 989.0  # H100 SXM dense bf16 (NVIDIA spec)
    prefill_mfu: float = 0.5  # assumption
    train_mfu: float = 0.4  # assumption
    train_flops_per_param_token: float = 6.0  # LoRA: forward 2 + recompute 2 (checkpointing) + input grads 2
    # layout (the shipped defaults)
    gpus: int = 8
    tensor_parallel: int = 1  # 27B bf16 = 54 GB of weights: one 80 GB GPU per vLLM engine
    shard_questions: int = 16  # generate: questions per shard
    judge_shard_size: int = 64  # judge: trajectories per shard
    # what grows with the run (assumptions: CPython sizes, S3 behaviour)
    bytes_per_key: int = 100  # a ~18-char id: str object (~67 B) + set slot (~25 B) + list pointer (8 B)
    manifest_bytes_per_key: int = 30  # the key, quotes, comma, newline, indent=2 padding
    objects_per_shard: int = 2  # shard-N.parquet + its commit record shard-N.json
    list_page: int = 1000  # S3 ListObjectsV2 keys per page
    s3_request_s: float = 0.03  # assumption: one sequential S3 request round trip
    train_metrics_per_step: int = 19  # the swirl objective's shown metrics (swirl/training/loop.py)


def per_trajectory(s: Setting) -> dict[str, float]:
    """Token counts of one trajectory (see the module docstring)."""
    k, p, a, o = s.steps, s.prompt_tokens, s.action_tokens, s.observation_tokens
    reread = (a + o) * k * (k - 1) / 2
    return {
        "generate_prompt": k * p + reread,
        "generate_prompt_cached": p + (k - 1) * o,
        "generate_output": k * a,
        "judge_prompt": k * (s.judge_instruction_tokens + p + a) + reread,
        "judge_output": k * s.judge_output_tokens,
    }


def rates(s: Setting) -> dict[str, float]:
    """Tokens per second of one GPU: decode (published peak x utilisation), prefill and training (FLOPs)."""
    flops = s.peak_tflops * 1e12
    return {
        "decode": s.decode_tokens_per_s * s.utilisation,
        "prefill": flops * s.prefill_mfu / (2 * s.params_b * 1e9),
        "train": flops * s.train_mfu / (s.train_flops_per_param_token * s.params_b * 1e9),
    }


def data_plan(s: Setting) -> dict[str, float]:
    """Tokens and GPU-hours of generate and judge over all trajectories."""
    t = {k: v * s.trajectories for k, v in per_trajectory(s).items()}
    r = rates(s)
    gen_s = t["generate_output"] / r["decode"] + t["generate_prompt_cached"] / r["prefill"]
    judge_s = t["judge_output"] / r["decode"] + t["judge_prompt"] / r["prefill"]
    return {**t, "generate_gpu_hours": gen_s / 3600, "judge_gpu_hours": judge_s / 3600}


def train_plan(s: Setting) -> dict[str, float]:
    """SWiRL training: the states the process filter keeps, the optimizer steps, and per step the sampled
    actions, their judging and the forward/backward over state + action (one sequence per action)."""
    keep = s.step_good_rate**s.steps  # a trajectory is kept when every step is GOOD
    states = s.trajectories * s.steps * keep
    steps = math.ceil(s.epochs * states / s.states_per_step)
    samples = steps * s.states_per_step * s.samples_per_state
    state_len = s.prompt_tokens + (s.action_tokens + s.observation_tokens) * (s.steps - 1) / 2
    r = rates(s)
    sample_s = samples * s.action_tokens / r["decode"] + states * state_len / r["prefill"]
    judge_prompt = s.judge_instruction_tokens + state_len + s.action_tokens
    judge_s = samples * (s.judge_output_tokens / r["decode"] + judge_prompt / r["prefill"])
    train_tokens = samples * (state_len + s.action_tokens)
    return {
        "kept_share": keep,
        "states": states,
        "optimizer_steps": steps,
        "sampled_actions": samples,
        "mean_state_tokens": state_len,
        "trained_tokens": train_tokens,
        "sample_gpu_hours": sample_s / 3600,
        "reward_gpu_hours": judge_s / 3600,
        "backward_gpu_hours": train_tokens / r["train"] / 3600,
    }


def layout(s: Setting) -> dict[str, float]:
    """Shards of generate and judge, and the engines (Ray actors) they spread over."""
    questions = math.ceil(s.trajectories / s.samples_per_question)
    actors = s.gpus // s.tensor_parallel
    gen_shards = math.ceil(questions / s.shard_questions)
    judge_shards = math.ceil(s.trajectories / s.judge_shard_size)
    return {
        "questions": questions,
        "actors": actors,
        "generate_shards": gen_shards,
        "generate_shards_per_actor": gen_shards / actors,
        "judge_shards": judge_shards,
        "judge_shards_per_actor": judge_shards / actors,
    }


def growth(s: Setting) -> dict[str, float]:
    """What the driver, the store and the tracker hold: done keys (judge: one per trajectory), the
    manifest, shard objects and the S3 LIST pages to list them, the sequential requests of a resume
    (GET commit record, HEAD x2, GET parquet to hash it) and of an S3 finalize (copy + delete per parquet),
    and the train metric rows."""
    lay, train = layout(s), train_plan(s)
    shards = lay["generate_shards"] + lay["judge_shards"]
    keys = s.trajectories
    return {
        "judge_done_keys_mb": keys * s.bytes_per_key / 1e6,
        "judge_manifest_mb": keys * s.manifest_bytes_per_key / 1e6,
        "shard_objects": shards * s.objects_per_shard,
        "list_calls": sum(
            math.ceil(n * s.objects_per_shard / s.list_page)
            for n in (lay["generate_shards"], lay["judge_shards"])
        ),
        "resume_requests": 4 * shards,
        "resume_minutes": 4 * shards * s.s3_request_s / 60,
        "finalize_requests": 2 * shards,
        "finalize_minutes": 2 * shards * s.s3_request_s / 60,
        "mlflow_train_rows": train["optimizer_steps"] * s.train_metrics_per_step,
    }


def plan(s: Setting) -> dict[str, Any]:
    data, train = data_plan(s), train_plan(s)
    total = data["generate_gpu_hours"] + data["judge_gpu_hours"]
    total += train["sample_gpu_hours"] + train["reward_gpu_hours"] + train["backward_gpu_hours"]
    return {
        "per_trajectory": per_trajectory(s),
        "rates": rates(s),
        "data": data,
        "train": train,
        "layout": layout(s),
        "growth": growth(s),
        "gpu_hours": total,
        "wall_hours_on_gpus": total / s.gpus,
    }


def scaled(s: Setting, factor: float) -> Setting:
    return dataclasses.replace(s, trajectories=int(s.trajectories * factor))


def _fmt(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"


def table(plans: dict[str, dict[str, Any]]) -> str:
    """One row per figure, one column per scale."""
    names = list(plans)
    sections = ("data", "train", "layout", "growth")
    lines = [f"{'figure':<36}" + "".join(f"{n:>16}" for n in names)]
    for sec in sections:
        lines.append(f"-- {sec}")
        for key in plans[names[0]][sec]:
            lines.append(f"{key:<36}" + "".join(f"{_fmt(plans[n][sec][key]):>16}" for n in names))
    for key in ("gpu_hours", "wall_hours_on_gpus"):
        lines.append(f"{key:<36}" + "".join(f"{_fmt(plans[n][key]):>16}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    base = Setting()
    ap.add_argument("--trajectories", type=int, default=base.trajectories)
    ap.add_argument("--steps", type=float, default=base.steps, help="mean actions per trajectory")
    ap.add_argument("--gpus", type=int, default=base.gpus)
    ap.add_argument("--tp", type=int, default=base.tensor_parallel, help="tensor-parallel GPUs per engine")
    ap.add_argument("--utilisation", type=float, default=base.utilisation)
    ap.add_argument("--scale", type=float, nargs="+", default=[1, 10, 100])
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    s = dataclasses.replace(
        base,
        trajectories=args.trajectories,
        steps=args.steps,
        gpus=args.gpus,
        tensor_parallel=args.tp,
        utilisation=args.utilisation,
    )
    plans = {f"x{_fmt(f)}": plan(scaled(s, f)) for f in args.scale}
    print(table(plans))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"setting": dataclasses.asdict(s), "plans": plans}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
