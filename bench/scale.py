"""The generate stage on Ray engine actors vs in this process: what running shards on actors costs per shard.

    python bench/scale.py [--questions 48] [--shard-questions 2] [--samples 2] [--steps 2] [--step-tokens 16]
                          [--actors 2] [--model PATH]

Three runs of the same generate job (the tests' tiny model unless --model, the hf engine, the calculator
tool), each into a fresh store: `local` (run.executor local: one engine in this process), `ray x1` (one
actor with every CPU of the local Ray cluster) and `ray xN` (`--actors` actors sharing them). The Ray cluster
is started once, before the runs (127.0.0.1, no dashboard, one logical CPU per core), its start timed apart.

Per shard = the time between the middle and the last shard written, divided by the shards in between: the
steady state, without the engine's (or the actors') start, which `to first shard` shows, and without the
burst of the first shards (they are written in order: those other actors finished while the first one was
still running are written at once). `per-shard ratio` is a run's per-shard time over local's: for `ray x1`
it is what Ray adds to each shard (submitting it, the actor's process, returning its Arrow table), since the
actor does the same work the local run does; for `ray xN` it also holds the speed-up of N actors (on a
machine with N free cores, near 1/N). Every run's table is checked identical to local's (token ids, order).
Prints a table and writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=48)
    ap.add_argument("--shard-questions", type=int, default=2)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--step-tokens", type=int, default=16)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--model", default="", help="a model folder; default: build the tests' tiny model")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "scale.json"))
    return ap


def _questions(folder: str, n: int) -> str:
    path = os.path.join(folder, "questions.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"question": f"What is {i} + {3 * i}?", "answer": f"#### {4 * i}"}) + "\n")
    return path


def _run(folder: str, name: str, args: argparse.Namespace, model: str, questions: str, executor) -> dict:
    """One generate run into a fresh store: seconds in all, to the first shard, per shard; the table."""
    from swirl.data.config import DatasetSpec
    from swirl.engines.config import EngineConfig
    from swirl.episodes import GenerateConfig
    from swirl.stages.base import Context, run_stage
    from swirl.stages.generate import Generate
    from swirl.stages.ingest import Ingest
    from swirl.store import Store

    store = Store(os.path.join(folder, name))
    spec = DatasetSpec(name="bench", format="gsm8k", path=questions)
    qref = run_stage(store, Ingest(spec)).ref
    cfg = GenerateConfig(
        samples_per_question=args.samples,
        shard_questions=args.shard_questions,
        max_steps_math=args.steps,
        max_tokens_per_step=args.step_tokens,
    )
    policy = EngineConfig(kind="hf", model=model, dtype="float32", max_model_len=1024)
    stamps: list[float] = []
    t0 = time.perf_counter()
    ctx = Context(progress=lambda p: stamps.append(time.perf_counter()))
    ref = run_stage(store, Generate(cfg, policy, spec, qref, executor=executor), ctx).ref
    total = time.perf_counter() - t0
    mid = len(stamps) // 2
    per_shard = (stamps[-1] - stamps[mid]) / max(1, len(stamps) - 1 - mid)
    table = store.read_ref(ref).select(["trajectory_id", "token_ids"]).to_pylist()
    return {
        "run": name,
        "seconds": round(total, 3),
        "to_first_shard_s": round(stamps[0] - t0, 3),
        "per_shard_s": round(per_shard, 4),
        "shards": len(stamps),
        "rows": ref.rows,
        "table": table,
    }


def _markdown(rows: list[dict], ray_start: float) -> str:
    lines = [
        "| run | seconds | to first shard (s) | per shard (s) | per-shard ratio vs local | same table |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['seconds']:.1f} | {r['to_first_shard_s']:.1f} | {r['per_shard_s']:.3f} | "
            f"{r['per_shard_ratio']:.2f} | {r['same_table']} |"
        )
    lines.append(f"\nRay cluster start (once, before the runs): {ray_start:.1f} s")
    return "\n".join(lines)


def main() -> None:
    args = _parser().parse_args()
    import ray

    from swirl.executors import ExecutorConfig, ensure_ray
    from swirl.models.tiny import build_tiny_model

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="swirl-bench-scale-") as folder:
        model = args.model or build_tiny_model(os.path.join(folder, "tiny"), seed=0)
        questions = _questions(folder, args.questions)
        t0 = time.perf_counter()
        ensure_ray(ExecutorConfig(executor="ray"), cores)
        ray_start = time.perf_counter() - t0
        logging.getLogger("swirl.executors").setLevel(logging.WARNING)
        runs = [
            ("local", ExecutorConfig()),
            ("ray x1", ExecutorConfig(executor="ray", ray_actors=1, ray_cpus_per_actor=cores)),
            (
                f"ray x{args.actors}",
                ExecutorConfig(
                    executor="ray", ray_actors=args.actors, ray_cpus_per_actor=max(cores / args.actors, 0.01)
                ),
            ),
        ]
        rows = [_run(folder, name, args, model, questions, ex) for name, ex in runs]
        ray.shutdown()
    local = rows[0]
    for r in rows:
        r["per_shard_ratio"] = round(r["per_shard_s"] / local["per_shard_s"], 3)
        r["same_table"] = r["table"] == local["table"]
    for r in rows:
        del r["table"]
    md = _markdown(rows, ray_start)
    print(md)
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "cores": cores,
        "ray_start_s": round(ray_start, 3),
        "runs": rows,
    }
    write_result(result, args.out, md)


if __name__ == "__main__":
    main()
