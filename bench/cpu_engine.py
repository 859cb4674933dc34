"""vLLM on CPU: decoding speed by core binding (`cpu_threads`) and by how an adapter is served
(`merge_adapter`).

    python bench/cpu_engine.py [--model runs/models/smollm2-135m-instruct] [--prompts 64] [--tokens 64]
                               [--repeats 2]

Settings, each in its own process (the binding is fixed when an engine starts):

- auto: vLLM's automatic binding (it keeps one core for its scheduler process; on a 2-core machine, half);
- all cores: `cpu_threads: all`;
- all cores + LoRA: the same with a LoRA adapter (rank 16 on every linear layer, random non-zero weights,
  built for the run) applied per request, as vLLM serves adapters;
- all cores + merged: the same adapter merged into a copy of the weights (`merge_adapter: true`).

Each process starts its engine, makes a short warm-up call, then times `--prompts` sampled completions of up
to `--tokens` tokens (fixed seed). Settings alternate for `--repeats` rounds; the table shows the median
generated tokens/s and the ratio to `auto` from the same run. Writes bench/results/cpu_engine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

# name -> (cpu_threads, adapter mode)
SETTINGS = {
    "auto": ("", "none"),
    "all cores": ("all", "none"),
    "all cores + LoRA": ("all", "lora"),
    "all cores + merged": ("all", "merged"),
}


def build_adapter(model: str, out: str) -> str:
    """A rank-16 LoRA on every linear layer with random non-zero weights (it changes the model's outputs)."""
    from swirl.models.random_lora import lora_config, save_random_adapter

    return save_random_adapter(model, out, lora=lora_config(16, 32), std=None, seed=0)  # peft's random init


def child(model: str, prompts: int, tokens: int, threads: str, mode: str, adapter: str) -> None:
    from swirl.engines import Sampling, make_engine
    from swirl.engines.config import EngineConfig

    cfg = EngineConfig(
        kind="vllm",
        model=model,
        dtype="float32",
        max_model_len=1024,
        cpu_kvcache_gb=1,
        cpu_threads=threads or None,
        enable_lora=mode == "lora",
        max_lora_rank=16,
        adapter=adapter if mode != "none" else None,
        merge_adapter=mode == "merged",
    )
    eng = make_engine(cfg)
    request_adapter = cfg.adapter
    texts = [f"Write a short story number {i} about a lighthouse keeper." for i in range(prompts)]
    eng.generate(texts[:4], Sampling(max_tokens=8), adapter=request_adapter)  # warm-up
    sampling = Sampling(max_tokens=tokens, temperature=1.0, seed=0)
    t0 = time.perf_counter()
    results = eng.generate(texts, sampling, adapter=request_adapter)
    seconds = time.perf_counter() - t0
    generated = sum(len(c.token_ids) for r in results for c in r.completions)
    eng.close()
    print("RESULT " + json.dumps({"tokens": generated, "seconds": seconds}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/models/smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "cpu_engine.json"))
    args = ap.parse_args()
    if args.child is not None:
        child(args.model, args.prompts, args.tokens, *args.child)
        return 0
    import tempfile

    adapter = build_adapter(args.model, os.path.join(tempfile.mkdtemp(prefix="swirl-bench-"), "adapter"))
    runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.repeats):
        for name, (threads, mode) in SETTINGS.items():
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--model",
                    args.model,
                    "--prompts",
                    str(args.prompts),
                    "--tokens",
                    str(args.tokens),
                    "--child",
                    threads,
                    mode,
                    adapter,
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            r = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            runs[name].append(r["tokens"] / r["seconds"])
            print(f"{name}: {runs[name][-1]:.1f} tok/s", flush=True)
    base = statistics.median(runs["auto"])
    rows = [
        {"setting": n, "tok_s": statistics.median(v), "vs_auto": statistics.median(v) / base, "runs": v}
        for n, v in runs.items()
    ]
    print(f"\n| setting | tok/s (median of {args.repeats}) | vs auto |\n|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['tok_s']:.1f} | {r['vs_auto']:.2f}x |")
    import shutil

    shutil.rmtree(os.path.dirname(adapter), ignore_errors=True)
    write_result(
        {
            "model": args.model,
            "prompts": args.prompts,
            "tokens": args.tokens,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "rows": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
