"""Decompose + filter throughput and memory on synthetic data: 1,000,000 step rows by default.

    python bench/steps.py [--steps 1000000] [--shard-trajectories 12500] [--root DIR] [--keep]

Writes synthetic `questions`, `trajectories` (with token ids, as generate would) and `judgments` tables into a
store, in shards as the sharded stages do, then runs the decompose and filter stages in a fresh child process
so that its peak RSS measures those stages alone. Prints a table and writes bench/results/steps.json. Targets
on a 2-core machine: under 30 s and 2 GB peak RSS for the two stages together.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

DATASETS = ("gsm8k", "hotpotqa")
ACTIONS = np.array([2, 3, 4, 5, 6])  # actions per trajectory cycle through these: 4 on average
PROMPT_TOKENS, ACTION_TOKENS, OBS_TOKENS = 120, 30, 80


def _shard(start: int, n: int, rng: np.random.Generator, questions: int):
    """Trajectory and judgment tables for trajectories start .. start+n-1 (built column-wise with pyarrow)."""
    import pyarrow as pa

    from swirl.tables import schema

    k = ACTIONS[(np.arange(start, start + n)) % len(ACTIONS)]
    tids = [f"traj-{i:07d}" for i in range(start, start + n)]
    qidx = np.arange(start, start + n) // 5 % questions  # 5 trajectories per question, as in the paper
    qids = [f"{DATASETS[q % 2]}-train-{q:05d}" for q in qidx]
    messages, spans, lengths = [], [], []
    for j in range(n):
        i = start + j
        msgs = [
            {
                "role": "user",
                "content": f"Help me answer the question in a few words. Question {i}: " + "x" * 300,
            }
        ]
        sp, pos = [], PROMPT_TOKENS
        for a in range(k[j]):
            last = a == k[j] - 1
            if last:
                act = f"I have enough information now. <answer>answer {i}</answer>"
            elif (i + a) % 11 == 0:
                act = "I am not sure what to do next."  # an invalid step
            else:
                act = (
                    f"Next I need the director of film {i}. <search_query>director of film {i} "
                    f"{a}</search_query>"
                )
            msgs.append({"role": "assistant", "content": act})
            sp.append({"start": pos, "end": pos + ACTION_TOKENS})
            pos += ACTION_TOKENS
            if not last:
                msgs.append({"role": "user", "content": f"director of film {i} {a} -> " + "y" * 280})
                pos += OBS_TOKENS
        messages.append(msgs)
        spans.append(sp)
        lengths.append(pos)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    token_ids = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(rng.integers(0, 32000, offsets[-1], dtype=np.int32))
    )
    trajs = pa.table(
        {
            "trajectory_id": pa.array(tids),
            "question_id": pa.array(qids),
            "sample_idx": pa.array(np.arange(start, start + n) % 5, pa.int32()),
            "messages": pa.array(messages, schema("trajectories").field("messages").type),
            "token_ids": token_ids,
            "action_spans": pa.array(spans, schema("trajectories").field("action_spans").type),
            "action_logprobs": pa.nulls(n, schema("trajectories").field("action_logprobs").type),
            "final_answer": pa.array([f"answer {start + j}" for j in range(n)]),
            "stop_reason": pa.array(["answer"] * n),
            "num_actions": pa.array(k, pa.int32()),
            "model": pa.array(["bench"] * n),
            "adapter": pa.nulls(n, pa.string()),
        },
        schema=schema("trajectories"),
    )
    steps = int(k.sum())
    label = rng.choice(np.array(["GOOD", "BAD", "UNKNOWN"], dtype=object), size=steps, p=[0.85, 0.12, 0.03])
    correct = rng.random(n) < 0.6
    traj_of_step = np.repeat(np.arange(n), k)
    step_no = np.arange(steps) - np.repeat(np.cumsum(k) - k, k)
    judged = pa.table(
        {
            "trajectory_id": pa.array(np.array(tids, dtype=object)[traj_of_step]),
            "step": pa.array(step_no, pa.int32()),
            "process_label": pa.array(label),
            "judge_text": pa.array([f"The step follows from the context. {lab}" for lab in label]),
            "outcome_correct": pa.array(correct[traj_of_step]),
            "outcome_llm": pa.nulls(steps, pa.bool_()),
            "outcome_llm_text": pa.array([""] * steps),
            "judge_model": pa.array(["bench-judge"] * steps),
        },
        schema=schema("judgments"),
    )
    return trajs, judged, tids


def make_inputs(root: str, steps: int, shard: int) -> dict:
    from swirl.store import Store
    from swirl.tables import to_table

    store = Store(root)
    n_traj = steps // int(ACTIONS.mean())
    questions = max(1, n_traj // 5)
    qrows = [
        {
            "question_id": f"{DATASETS[q % 2]}-train-{q:05d}",
            "dataset": DATASETS[q % 2],
            "split": "train",
            "question": f"Question {q}?",
            "answers": [str(q)],
            "level": "",
            "hops": None,
            "metadata": "{}",
        }
        for q in range(questions)
    ]
    q = store.write_table("ingest", "bench-q", to_table("questions", qrows), "questions", {})
    tw = store.sharded("generate", "bench-t", "trajectories", {})
    jw = store.sharded("judge", "bench-j", "judgments", {})
    rng = np.random.default_rng(0)
    for start in range(0, n_traj, shard):
        trajs, judged, _ = _shard(start, min(shard, n_traj - start), rng, questions)
        tw.write_shard(trajs, [f"{start}"])  # keys: one per shard (the ids would bloat the manifest)
        jw.write_shard(judged, [f"{start}"])
    t, j = tw.finalize(), jw.finalize({"outcome_llm_enabled": False})
    return {
        "questions": q.version,
        "trajectories": t.version,
        "judgments": j.version,
        "trajectory_rows": t.rows,
        "judgment_rows": j.rows,
    }


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (swirl.system.peak_rss_bytes: VmHWM, right for a child process)."""
    from swirl.system import peak_rss_bytes

    return round(peak_rss_bytes() / 2**20, 1)


def run_stages(root: str, versions: dict) -> dict:
    """The measured part (in a fresh process): decompose, then filter twice (plain and fixed-count)."""
    from swirl.stages.base import run_stage
    from swirl.stages.decompose import Decompose
    from swirl.stages.filter import Filter
    from swirl.store import Store
    from swirl.subtrajectories import DecomposeConfig, FilterConfig

    store = Store(root)
    out = {"rss_after_imports_mb": peak_rss_mb()}
    t = store.ref("generate", versions["trajectories"])
    j = store.ref("judge", versions["judgments"])
    q = store.ref("ingest", versions["questions"])
    t0 = time.perf_counter()
    steps = run_stage(store, Decompose(t, j, q, DecomposeConfig())).ref
    out["decompose_s"] = round(time.perf_counter() - t0, 2)
    out["decompose_rss_mb"] = peak_rss_mb()
    t1 = time.perf_counter()
    f = run_stage(store, Filter(steps, FilterConfig(strategy="process"))).ref
    out["filter_s"] = round(time.perf_counter() - t1, 2)
    t2 = time.perf_counter()
    ff = run_stage(store, Filter(steps, FilterConfig(strategy="process", fixed_count="min"))).ref
    out["filter_fixed_count_s"] = round(time.perf_counter() - t2, 2)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = peak_rss_mb()
    out["step_rows"] = steps.rows
    out["decompose_shards"] = len(store.manifest("decompose", steps.version)["parts"])
    out["kept"] = {s: f.summary[f"kept_{s}"] for s in ("none", "process", "outcome", "process_outcome")}
    out["kept_steps_process"] = f.summary["kept_steps_process"]
    out["fixed_count"] = ff.summary["fixed_count"]
    out["action_kinds"] = steps.summary["action_kinds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--shard-trajectories", type=int, default=12_500, help="trajectories per input shard")
    ap.add_argument("--root", default="", help="store folder (default: a temporary folder, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the store folder")
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "steps.json")
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # the measured child process
        root, versions = json.loads(args.child)
        print(json.dumps(run_stages(root, versions)))
        return

    root = args.root or tempfile.mkdtemp(prefix="swirl-bench-steps-")
    try:
        t0 = time.perf_counter()
        versions = make_inputs(root, args.steps, args.shard_trajectories)
        make_s = round(time.perf_counter() - t0, 2)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", json.dumps([root, versions])],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            sys.exit(f"the measured child process failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep and not args.root:
            shutil.rmtree(root, ignore_errors=True)

    from rich.console import Console
    from rich.table import Table

    rows = [
        ("step rows", f"{res['step_rows']:,}"),
        ("trajectories", f"{versions['trajectory_rows']:,}"),
        ("inputs built in (not measured)", f"{make_s} s"),
        ("decompose", f"{res['decompose_s']} s ({res['decompose_shards']} shards)"),
        ("filter (process)", f"{res['filter_s']} s"),
        ("filter (process, fixed_count=min)", f"{res['filter_fixed_count_s']} s"),
        ("decompose + both filters", f"{res['total_s']} s (target < 30 s)"),
        ("step rows / s", f"{res['step_rows'] / res['total_s']:,.0f}"),
        ("RSS after imports (baseline)", f"{res['rss_after_imports_mb']} MB"),
        ("peak RSS after decompose", f"{res['decompose_rss_mb']} MB"),
        ("peak RSS", f"{res['peak_rss_mb']} MB (target < 2048 MB)"),
        ("kept trajectories per strategy", ", ".join(f"{k} {v:,}" for k, v in res["kept"].items())),
        ("fixed_count=min per dataset", ", ".join(f"{k} {v:,}" for k, v in res["fixed_count"].items())),
        ("action kinds", ", ".join(f"{k} {v:,}" for k, v in res["action_kinds"].items())),
    ]
    t = Table(title=f"decompose + filter, {args.steps:,} synthetic step rows (streamed by row group)")
    t.add_column("what")
    t.add_column("value", justify="right")
    for r in rows:
        t.add_row(*r)
    Console().print(t)
    write_result(
        {
            "steps_requested": args.steps,
            "trajectories": versions["trajectory_rows"],
            "inputs_build_s": make_s,
            "cpus": os.cpu_count(),
            **res,
            "targets": {"total_s": 30, "peak_rss_mb": 2048},
            "meets_targets": res["total_s"] < 30 and res["peak_rss_mb"] < 2048,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
