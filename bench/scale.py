"""The generate stage's shards on Ray engine actors vs in this process: what Ray adds to each shard.

    python bench/scale.py [--questions 48] [--shard-questions 2] [--samples 2] [--steps 2] [--step-tokens 16]
                          [--actors 2] [--model PATH]

The generate job's shards (the tests' tiny model unless --model, the hf engine, the calculator tool) run
through `swirl.executors.run_shards`, the call the stage makes, three times: `local` (one engine in this
process), `ray x1` (one actor with every CPU of the local Ray cluster) and `ray xN` (`--actors` actors sharing
them). The Ray cluster is started once, before the runs (127.0.0.1, no dashboard), its start timed apart.

Every shard's output carries two times: `seconds`, computing it where it ran, and `round_trip_s`, from the
driver handing it out to the driver holding its rows (on Ray: plus the actor call, the result's transfer and
the driver's turn to collect it). Their ratio, shard by shard in the same run, is Ray's per-shard overhead,
whatever the machine's load (on a shared machine the compute times of separate runs are not comparable; the
load average is recorded). Medians over the shards: the first shard of each actor also waits for the actor
to start and load its engine, which `to first shard` shows. `shards/s` counts the shards after the first one
over the time after it (N actors: up to N times local's on N free cores). Each run's table is checked
against local's: the same token ids in the same order, and the largest log-prob difference.

Then the capacity plan of the paper's setting at 1x, 10x and 100x (`scripts/capacity.py`, whose every input is
marked published, shipped default or assumption; docs/scale.md cites the sources). Prints both tables and
writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def _job(folder: str, args: argparse.Namespace, model: str):
    """The generate job on `--questions` calculator questions, its store, and its shards (as the stage cuts
    them)."""
    from swirl.data.config import DatasetSpec
    from swirl.engines.config import EngineConfig
    from swirl.episodes import GenerateConfig
    from swirl.executors import in_shards
    from swirl.stages.base import run_stage
    from swirl.stages.generate import Generate
    from swirl.stages.ingest import Ingest
    from swirl.store import Store

    path = os.path.join(folder, "questions.jsonl")
    with open(path, "w") as f:
        for i in range(args.questions):
            f.write(json.dumps({"question": f"What is {i} + {3 * i}?", "answer": f"#### {4 * i}"}) + "\n")
    store = Store(os.path.join(folder, "store"))
    spec = DatasetSpec(name="bench", format="gsm8k", path=path)
    cfg = GenerateConfig(
        samples_per_question=args.samples,
        shard_questions=args.shard_questions,
        max_steps_math=args.steps,
        max_tokens_per_step=args.step_tokens,
    )
    policy = EngineConfig(kind="hf", model=model, dtype="float32", max_model_len=1024)
    job = Generate(cfg, policy, spec, run_stage(store, Ingest(spec)).ref)
    items, _ = job.work_items(store)
    return job, store, in_shards(items, cfg.shard_questions)


def _run(name: str, executor, job, store, shards) -> dict:
    """The shards through `run_shards` on `executor`: times, per-shard medians, the table."""
    import pyarrow as pa

    from swirl.engines import EnginePool
    from swirl.executors import run_shards

    pool = EnginePool()  # the local executor's engine (Ray actors build their own)
    outs, t0, first = [], time.perf_counter(), 0.0
    for out in run_shards(executor, job, store, shards, lambda role, cfg: pool.get(cfg), None):
        first = first or time.perf_counter() - t0
        outs.append(out)
    total = time.perf_counter() - t0
    pool.close()
    med = statistics.median
    return {
        "run": name,
        "seconds": round(total, 3),
        "to_first_shard_s": round(first, 3),
        "shards_per_s": round((len(outs) - 1) / max(total - first, 1e-9), 3),
        "compute_per_shard_s": round(med(o.seconds for o in outs), 4),
        "round_trip_per_shard_s": round(med(o.round_trip_s for o in outs), 4),
        "overhead_per_shard_s": round(med(o.round_trip_s - o.seconds for o in outs), 4),
        "overhead_ratio": round(med(o.round_trip_s / o.seconds for o in outs), 4),
        "table": pa.concat_tables([o.table for o in outs]),
    }


def _compare(local, other) -> dict:
    """Whether a run's rows are local's (ids and token ids, in order), and its largest log-prob difference."""
    cols = ["trajectory_id", "token_ids"]
    same = other.select(cols).equals(local.select(cols))
    a = [x for r in local.column("action_logprobs").to_pylist() for step in r for x in step]
    b = [x for r in other.column("action_logprobs").to_pylist() for step in r for x in step]
    diff = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0) if len(a) == len(b) else None
    return {"same_tokens": same, "max_logprob_diff": diff}


def _markdown(rows: list[dict], ray_start: float, load: list[float]) -> str:
    lines = [
        "| run | seconds | to first shard (s) | shards/s after it | compute per shard (s) | round trip per "
        "shard (s) | overhead per shard (s) | round trip / compute | same tokens | max log-prob diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['seconds']:.1f} | {r['to_first_shard_s']:.1f} | {r['shards_per_s']:.2f} | "
            f"{r['compute_per_shard_s']:.3f} | {r['round_trip_per_shard_s']:.3f} | "
            f"{r['overhead_per_shard_s']:.4f} | {r['overhead_ratio']:.3f} | {r['same_tokens']} | "
            f"{r['max_logprob_diff']} |"
        )
    lines.append(f"\nMedians over the shards. Ray cluster start (once, before the runs): {ray_start:.1f} s. ")
    lines.append(f"Load average (1 min) before and after: {load[0]:.1f}, {load[1]:.1f}.")
    return "\n".join(lines)


def capacity_plan() -> tuple[dict, str]:
    """The paper's setting at 1x, 10x and 100x: scripts/capacity.py's figures and its table."""
    import dataclasses
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "capacity.py")
    spec = importlib.util.spec_from_file_location("capacity", path)
    capacity = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = capacity  # dataclasses look their module up there
    spec.loader.exec_module(capacity)
    setting = capacity.Setting()
    plans = {f"x{f}": capacity.plan(capacity.scaled(setting, f)) for f in (1, 10, 100)}
    sources = "docs/scale.md section 1 (published figures with their URLs; assumptions marked)"
    result = {"setting": dataclasses.asdict(setting), "plans": plans, "sources": sources}
    return result, capacity.table(plans)


def main() -> None:
    args = _parser().parse_args()
    import ray

    from swirl.executors import ExecutorConfig, ensure_ray
    from swirl.models.tiny import build_tiny_model

    cores = os.cpu_count() or 1
    executors = {
        "local": ExecutorConfig(),
        "ray x1": ExecutorConfig(executor="ray", ray_actors=1, ray_cpus_per_actor=cores),
        f"ray x{args.actors}": ExecutorConfig(
            executor="ray", ray_actors=args.actors, ray_cpus_per_actor=max(cores / args.actors, 0.01)
        ),
    }
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="swirl-bench-scale-") as folder:
        model = args.model or build_tiny_model(os.path.join(folder, "tiny"), seed=0)
        job, store, shards = _job(folder, args, model)
        t0 = time.perf_counter()
        ensure_ray(ExecutorConfig(executor="ray"), cores)
        ray_start = time.perf_counter() - t0
        rows = [_run(name, ex, job, store, shards) for name, ex in executors.items()]
        ray.shutdown()
    load.append(os.getloadavg()[0])
    local = rows[0]["table"]
    for r in rows:
        r.update(_compare(local, r.pop("table")))
    md = _markdown(rows, ray_start, load)
    capacity, capacity_table = capacity_plan()
    md += "\n\nCapacity plan of the paper's setting (scripts/capacity.py; sources: docs/scale.md)\n\n"
    md += "```\n" + capacity_table + "\n```\n"
    print(md)
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "cores": cores,
        "shards": len(shards),
        "load_average_1min": load,
        "ray_start_s": round(ray_start, 3),
        "runs": rows,
        "capacity_plan": capacity,
    }
    write_result(result, args.out, md)


if __name__ == "__main__":
    main()
