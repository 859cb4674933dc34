"""Engine throughput on the tiny model: vLLM vs the HF engine, greedy, same prompts, same token counts.

    python bench/engines.py [--prompts 64] [--max-tokens 128] [--model PATH]

Prints a table and writes bench/results/engines.json. The figure that matters is the ratio measured in the
same run (these machines are noisy); both engines produce identical greedy ids, which the script checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--model", default="")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "engines.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from swirl.data.synthetic import gsm8k_records
    from swirl.engines.base import Sampling
    from swirl.engines.hf import HFEngine
    from swirl.engines.vllm import VLLMEngine
    from swirl.models.tiny import build_tiny_model

    model = args.model or build_tiny_model(os.path.join(tempfile.gettempdir(), "swirl-bench-tiny"))
    prompts = [[{"role": "user", "content": r["question"]}] for r in gsm8k_records(args.prompts, seed=1)]
    s = Sampling(max_tokens=args.max_tokens, logprobs=True)
    rows = []
    outputs = {}
    for name, make in (
        ("hf", lambda: HFEngine(model, dtype="float32", batch_size=16)),
        ("vllm", lambda: VLLMEngine(model, dtype="float32", max_model_len=2048, enable_lora=False)),
    ):
        t0 = time.perf_counter()
        eng = make()
        load = time.perf_counter() - t0
        eng.generate(prompts[:2], Sampling(max_tokens=4))  # warm-up
        t0 = time.perf_counter()
        res = eng.generate(prompts, s)
        dt = time.perf_counter() - t0
        toks = sum(len(c.token_ids) for r in res for c in r.completions)
        outputs[name] = [[c.token_ids for c in r.completions] for r in res]
        rows.append(
            {
                "engine": name,
                "load_s": round(load, 2),
                "gen_s": round(dt, 3),
                "tokens": toks,
                "tokens_per_s": round(toks / dt, 1),
            }
        )
        eng.close()
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup_vs_hf"] = round(r["tokens_per_s"] / base, 2)
    identical = outputs["hf"] == outputs["vllm"]
    t = Table(
        title=f"greedy generation, {args.prompts} prompts x <= {args.max_tokens} tokens (ids identical: "
        f"{identical})"
    )
    for k in rows[0]:
        t.add_column(k, justify="right")
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    Console().print(t)
    write_result(
        {
            "rows": rows,
            "greedy_ids_identical": identical,
            "prompts": args.prompts,
            "max_tokens": args.max_tokens,
            "model": model,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
