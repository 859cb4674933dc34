"""Rollout-loop throughput: the multi-step loop vs one raw `LLM.generate` call vs the HF engine, on the tiny model.

    python bench/rollout.py [--questions 200] [--samples 5] [--steps 4] [--step-tokens 64] [--hf-questions 20]

The loop generates `samples` trajectories for each question with the calculator tool, step-synchronously. The
baseline is one raw vLLM `LLM.generate` call on the first-step prompts that produces the same number of tokens
(`ignore_eos`, the same per-prompt budget), i.e. what the engine does with no loop around it. A second raw call adds what the
loop asks of every step (sampled-token logprobs in the same flat format, the action stop strings). The HF engine runs the same loop on
`--hf-questions` questions (it is much slower). Figures are generated tokens per second of wall time;
the ratios are measured in the same run. Prints a table and writes bench/results/rollout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def _loop(engine, questions, samples, settings):
    from swirl.protocol import MATH_PROMPT, render_prompt
    from swirl.rollout import ChatSegments, rollout, start_trajectories
    from swirl.tools.calculator import calculate

    trajs = start_trajectories(
        questions, samples,
        lambda q: [{"role": "user", "content": render_prompt(MATH_PROMPT, q["question"], settings.max_steps)}],
        ChatSegments(engine.tokenizer),
    )
    t0 = time.perf_counter()
    rollout(engine, trajs, {"math": calculate}, settings)
    dt = time.perf_counter() - t0
    return trajs, dt, sum(t.generated_tokens for t in trajs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=64)
    ap.add_argument("--hf-questions", type=int, default=20)
    ap.add_argument("--model", default="")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "rollout.json"))
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table
    from vllm import SamplingParams

    from swirl.data.synthetic import gsm8k_records
    from swirl.engines.base import Sampling
    from swirl.engines.hf import HFEngine
    from swirl.engines.vllm import VLLMEngine
    from swirl.models.tiny import build_tiny_model
    from swirl.rollout import RolloutSettings

    model = args.model or build_tiny_model(os.path.join(tempfile.gettempdir(), "swirl-bench-tiny"))
    qs = [{"question_id": f"q{i}", "question": r["question"], "task": "math"}
          for i, r in enumerate(gsm8k_records(args.questions, seed=3))]
    settings = RolloutSettings(max_steps=args.steps, max_tokens_per_step=args.step_tokens, max_context=2048,
                               temperature=1.0, seed=0)
    rows = []

    eng = VLLMEngine(model, dtype="float32", max_model_len=2048, enable_lora=False, cpu_kvcache_gb=2)
    eng.generate([[1, 2, 3]], Sampling(max_tokens=4))  # warm-up
    vllm_block_size = eng.llm.llm_engine.vllm_config.cache_config.block_size
    trajs, dt, toks = _loop(eng, qs, args.samples, settings)
    rows.append({"run": "rollout loop (vllm)", "trajectories": len(trajs), "gen_tokens": toks, "seconds": round(dt, 2),
                 "tokens_per_s": round(toks / dt, 1)})

    # Raw baseline: the first-step prompts, one call, the same total number of generated tokens; then the same call
    # with what the loop asks of every step: sampled-token logprobs (in the engine's format) and the stop strings.
    from swirl.protocol import STOP_STRINGS

    prompts = [{"prompt_token_ids": t.token_ids[: t.action_spans[0][0]]} for t in trajs]
    per = max(1, round(toks / len(prompts)))
    features = {"logprobs": 0, **eng._flat, "stop": list(STOP_STRINGS), "include_stop_str_in_output": True}
    for run, extra in (("raw LLM.generate (vllm)", {}), ("raw + logprobs + stops (vllm)", features)):
        params = [SamplingParams(temperature=1.0, max_tokens=per, ignore_eos=True, seed=i, **extra)
                  for i in range(len(prompts))]
        t0 = time.perf_counter()
        outs = eng.llm.generate(prompts, params, use_tqdm=False)
        raw_dt = time.perf_counter() - t0
        raw_toks = sum(len(o.outputs[0].token_ids) for o in outs)
        rows.append({"run": run, "trajectories": len(prompts), "gen_tokens": raw_toks, "seconds": round(raw_dt, 2),
                     "tokens_per_s": round(raw_toks / raw_dt, 1)})
    eng.close()

    hf = HFEngine(model, dtype="float32", batch_size=32)
    htrajs, hdt, htoks = _loop(hf, qs[: args.hf_questions], args.samples, settings)
    rows.append({"run": "rollout loop (hf)", "trajectories": len(htrajs), "gen_tokens": htoks, "seconds": round(hdt, 2),
                 "tokens_per_s": round(htoks / hdt, 1)})

    raw_rate = rows[1]["tokens_per_s"]
    for r in rows:
        r["vs_raw_vllm"] = round(r["tokens_per_s"] / raw_rate, 3)
    result = {
        "rows": rows,
        "loop_vs_raw": rows[0]["vs_raw_vllm"],
        "loop_vs_raw_with_logprobs_and_stops": round(rows[0]["tokens_per_s"] / rows[2]["tokens_per_s"], 3),
        "loop_vllm_vs_hf": round(rows[0]["tokens_per_s"] / rows[3]["tokens_per_s"], 2),
        "settings": vars(args) | {"model": model},
        "cpus": os.cpu_count(),
        "vllm_block_size": vllm_block_size,
    }
    t = Table(title=f"rollout throughput: {args.questions} questions x {args.samples} samples, <= {args.steps} steps "
                    f"x {args.step_tokens} tokens (tiny model)")
    for k in rows[0]:
        t.add_column(k, justify="right")
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    Console().print(t)
    Console().print(f"loop / raw = {result['loop_vs_raw']} (target >= 0.8); loop / raw with logprobs+stops = "
                    f"{result['loop_vs_raw_with_logprobs_and_stops']}; loop vLLM / loop HF = {result['loop_vllm_vs_hf']}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
