"""Rollout-loop throughput: the multi-step loop vs one raw `LLM.generate` call vs the HF engine.

    python bench/rollout.py [--questions 200] [--samples 5] [--steps 4] [--step-tokens 64] [--repeats 2]
                            [--hf-questions 10]
                            [--hidden 128 --intermediate 256 --layers 2 --heads 2 --kv-heads 2]
                            [--model PATH --dtype bfloat16 --cuda-graphs]   (a GPU run on a real model)

The loop generates `samples` trajectories per question with the calculator tool, step-synchronously (one
engine call per step, stop strings, sampled-token log-probs, observations appended). Baselines, on the same
engine:

- raw: one `LLM.generate` call on the loop's first-step prompts producing the same number of tokens
  (`ignore_eos`, the same per-prompt budget): the engine with no loop around it.
- raw + logprobs + stops: the same call with what the loop asks of every step.
- engine replaying the loop's steps: for each step, one raw call on exactly the prompts the loop sent at that
  step (so at the loop's longer contexts; the prompts are already in the prefix cache, so the observations are
  not prefilled again).
- replay, observations prefilled: the same, with the tokens each step added (template + observation) changed,
  so the engine prefills them as it did in the loop: the engine work of the loop without the loop.
  loop / replay-prefilled is what the loop machinery costs (Python, tools, the step barrier);
  replay-prefilled / raw is what multi-step generation costs the engine, whatever the loop.

Every figure is generated tokens per second of wall time, after a warm-up loop on other questions (the first
calls of a fresh engine run slower), measured `--repeats` times with fresh seeds (nothing generated is reused
from the prefix cache) in alternating order; the table shows the medians, all ratios come from the same run.
`mean context` is the average number of tokens before each generated token (decoding cost grows with it;
`--sweep 277,400,550,700` measures by how much).
The model defaults to the tests' tiny model; the shape options build a wider one (`--heads 8 --kv-heads 2` is
grouped-query attention, like most current models). Prints a table and writes bench/results/rollout.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result


def _start(engine, questions, samples, max_steps):
    """The loop's trajectories before step 1: one per (question, sample), prompt ids only."""
    from swirl.protocol import MATH_PROMPT, render_prompt
    from swirl.rollout import ChatSegments, start_trajectories

    return start_trajectories(
        questions,
        samples,
        lambda q: [{"role": "user", "content": render_prompt(MATH_PROMPT, q["question"], max_steps)}],
        ChatSegments(engine.tokenizer),
    )


def _loop(engine, questions, samples, settings):
    from swirl.rollout import rollout
    from swirl.tools.calculator import calculate

    trajs = _start(engine, questions, samples, settings.max_steps)
    t0 = time.perf_counter()
    rollout(engine, trajs, {"math": calculate}, settings)
    dt = time.perf_counter() - t0
    return trajs, dt, sum(t.generated_tokens for t in trajs)


def _mean_context(spans: list[tuple[int, int]]) -> float:
    """Average context length over generated tokens: a token at position p is decoded with p tokens before
    it."""
    n = sum(b - a for a, b in spans)
    return sum((a + b - 1) / 2 * (b - a) for a, b in spans) / max(1, n)


REPLAY = "engine replaying the loop's steps"
REPLAY_PREFILL = "replay, observations prefilled"


def _replay_prompt(t, k: int, fresh: bool, vocab: int) -> list[int]:
    """The prompt the loop sent for step k; `fresh` changes the tokens added since action k-1 (so they are not
    in the prefix cache, as in the loop, which prefilled them) without changing the length."""
    ids = t.token_ids[: t.action_spans[k][0]]
    if fresh and k > 0:
        cut = t.action_spans[k - 1][1]
        ids = ids[:cut] + [(x + 1) % vocab for x in ids[cut:]]
    return ids


def _raw(llm, prompts, budget, seed0, extra):
    from vllm import SamplingParams

    params = [
        SamplingParams(temperature=1.0, max_tokens=budget, ignore_eos=True, seed=seed0 + i, **extra)
        for i in range(len(prompts))
    ]
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    dt = time.perf_counter() - t0
    spans = [(len(p), len(p) + len(o.outputs[0].token_ids)) for p, o in zip(prompts, outs, strict=False)]
    return sum(b - a for a, b in spans), dt, spans


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hf-questions", type=int, default=10, help="0 skips the HF engine")
    ap.add_argument(
        "--model", default="", help="a model folder; default: build the tiny model with the shape below"
    )
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-num-seqs", type=int, default=None)
    ap.add_argument(
        "--cuda-graphs", action="store_true", help="GPU: capture CUDA graphs (vLLM's default; slower start)"
    )
    ap.add_argument(
        "--sweep",
        default="",
        help="context lengths, e.g. 277,400,550,700: also time the engine decoding "
        "64 tokens for 1000 prompts of each length, prompts prefilled (cached) beforehand and not shared",
    )
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "rollout.json"))
    return ap


def _model(args: argparse.Namespace) -> str:
    """--model, or the tiny model of the shape options, built in the temporary folder."""
    from swirl.models.tiny import build_tiny_model

    shape = {
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_layers": args.layers,
        "num_heads": args.heads,
        "num_kv_heads": args.kv_heads,
    }
    if args.model:
        return args.model
    tiny = shape == {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_layers": 2,
        "num_heads": 2,
        "num_kv_heads": 2,
    }
    name = "swirl-bench-tiny" + ("" if tiny else "-" + "-".join(str(v) for v in shape.values()))
    return build_tiny_model(os.path.join(tempfile.gettempdir(), name), **shape)


def _settings(args: argparse.Namespace, seed: int):
    from swirl.rollout import RolloutSettings

    return RolloutSettings(
        max_steps=args.steps,
        max_tokens_per_step=args.step_tokens,
        max_context=2048,
        temperature=1.0,
        seed=seed,
    )


Runs = dict[str, list[tuple[int, float, float]]]  # run -> [(tokens, seconds, mean context)]


def _record(runs: Runs, run: str, toks: int, dt: float, ctx: float) -> None:
    runs.setdefault(run, []).append((toks, dt, ctx))


def _replay(eng, args: argparse.Namespace, trajs, seed: int, vocab: int, runs: Runs) -> None:
    """The engine on the prompts the loop sent, one call per step: exactly (all cached), or with each step's
    new tokens (template + observation) changed so that they are prefilled as in the loop."""
    for run, fresh in ((REPLAY, False), (REPLAY_PREFILL, True)):
        rt, rdt, rspans = 0, 0.0, []
        for k in range(args.steps):
            prompts = [_replay_prompt(t, k, fresh, vocab) for t in trajs if len(t.action_spans) > k]
            if not prompts:
                break
            n, d, sp = _raw(
                eng.llm,
                prompts,
                args.step_tokens,
                (2 + fresh) * 1_000_000 * seed + 100_000 * k,
                {"logprobs": 0, **eng._flat},
            )
            rt, rdt, rspans = rt + n, rdt + d, rspans + sp
        _record(runs, run, rt, rdt, _mean_context(rspans))


def _repeat(eng, args: argparse.Namespace, qs, rep: int, features: dict, vocab: int, runs: Runs) -> None:
    """One measurement of every vLLM run: the loop (and its replays) and the raw calls, in alternating
    order."""
    seed = 1 + rep  # fresh seeds: nothing generated is reused from the prefix cache across repeats
    order = ("loop", "raw") if rep % 2 == 0 else ("raw", "loop")
    first_prompts = None
    per = 0
    for what in order:
        if what == "loop":
            trajs, dt, toks = _loop(eng, qs, args.samples, _settings(args, seed))
            _record(
                runs,
                "rollout loop (vllm)",
                toks,
                dt,
                _mean_context([s for t in trajs for s in t.action_spans]),
            )
            _replay(eng, args, trajs, seed, vocab, runs)
            first_prompts = [t.token_ids[: t.action_spans[0][0]] for t in trajs]
            per = max(1, round(toks / len(trajs)))
        else:
            if first_prompts is None:  # raw first: the loop's first-step prompts
                first_prompts = [t.token_ids for t in _start(eng, qs, args.samples, args.steps)]
                prev = runs.get("rollout loop (vllm)")
                per = round(prev[-1][0] / len(first_prompts)) if prev else args.steps * args.step_tokens
            for run, extra in (
                ("raw LLM.generate (vllm)", {}),
                ("raw + logprobs + stops (vllm)", features),
            ):
                n, d, sp = _raw(eng.llm, first_prompts, per, 1_000_000 * seed, extra)
                _record(runs, run, n, d, _mean_context(sp))


def _sweep(eng, args: argparse.Namespace, vocab: int) -> list[dict]:
    """--sweep: decoding speed by prompt length, on 1000 random prompts prefilled beforehand."""
    sweep = []
    if args.sweep:
        import random

        from vllm import SamplingParams

        rng = random.Random(0)
        for n_ctx in (int(x) for x in args.sweep.split(",")):
            prompts = [[rng.randrange(vocab) for _ in range(n_ctx)] for _ in range(1000)]
            # prefill once: the timed call only decodes
            eng.llm.generate(
                [{"prompt_token_ids": p} for p in prompts],
                [SamplingParams(max_tokens=1)] * len(prompts),
                use_tqdm=False,
            )
            n, d, _ = _raw(eng.llm, prompts, args.step_tokens, 7_000_000, {})
            sweep.append({"prompt_tokens": n_ctx, "tokens_per_s": round(n / d, 1)})
    return sweep


def _rows(runs: Runs) -> list[dict]:
    """One row per run: the medians over the repeats, and the speed relative to the raw call."""
    rows = []
    for run, ms in runs.items():
        rates = [t / d for t, d, _ in ms]
        rows.append(
            {
                "run": run,
                "gen_tokens": ms[-1][0],
                "mean_context": round(statistics.mean(c for _, _, c in ms)),
                "seconds": round(statistics.median(d for _, d, _ in ms), 2),
                "tokens_per_s": round(statistics.median(rates), 1),
                "tokens_per_s_each": [round(r, 1) for r in rates],
            }
        )
    raw_rate = {r["run"]: r["tokens_per_s"] for r in rows}["raw LLM.generate (vllm)"]
    for r in rows:
        r["vs_raw"] = round(r["tokens_per_s"] / raw_rate, 3)
    return rows


def _ratios(rows: list[dict]) -> dict:
    rate = {r["run"]: r["tokens_per_s"] for r in rows}
    raw_rate = rate["raw LLM.generate (vllm)"]
    loop = rate["rollout loop (vllm)"]
    return {
        "loop_vs_raw": round(loop / raw_rate, 3),
        "loop_vs_raw_with_logprobs_and_stops": round(loop / rate["raw + logprobs + stops (vllm)"], 3),
        "loop_vs_replay": round(loop / rate[REPLAY], 3),
        "replay_vs_raw": round(rate[REPLAY] / raw_rate, 3),
        "loop_vs_replay_prefilled": round(loop / rate[REPLAY_PREFILL], 3),
        "replay_prefilled_vs_raw": round(rate[REPLAY_PREFILL] / raw_rate, 3),
        "loop_vllm_vs_hf": round(loop / rate["rollout loop (hf)"], 2)
        if "rollout loop (hf)" in rate
        else None,
    }


def _print(args: argparse.Namespace, rows: list[dict], result: dict, sweep: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"rollout throughput: {args.questions} questions x {args.samples} samples, <= {args.steps} "
        f"steps x {args.step_tokens} tokens, median of {args.repeats}"
    )
    cols = ["run", "gen_tokens", "mean_context", "seconds", "tokens_per_s", "vs_raw"]
    for c in cols:
        t.add_column(c, justify="left" if c == "run" else "right")
    for r in rows:
        t.add_row(*(str(r[c]) for c in cols))
    con = Console(width=120)
    con.print(t)
    con.print(
        f"loop / raw = {result['loop_vs_raw']} (target >= 0.8); loop / raw with logprobs+stops = "
        f"{result['loop_vs_raw_with_logprobs_and_stops']}; loop / engine replaying its steps = "
        f"{result['loop_vs_replay']} (observations prefilled: {result['loop_vs_replay_prefilled']}); "
        f"replay / raw = {result['replay_vs_raw']} ({result['replay_prefilled_vs_raw']}); "
        f"loop vLLM / loop HF = {result['loop_vllm_vs_hf']}"
    )
    if sweep:
        con.print(
            "decode tok/s by prompt length (cached, unshared prompts): "
            + ", ".join(f"{r['prompt_tokens']}: {r['tokens_per_s']:.0f}" for r in sweep)
        )


def main() -> None:
    args = _parser().parse_args()

    from swirl.data.synthetic import gsm8k_records
    from swirl.engines.hf import HFEngine
    from swirl.engines.vllm import VLLMEngine
    from swirl.protocol import STOP_STRINGS

    model = _model(args)
    warm_n = max(20, args.questions // 5)
    recs = gsm8k_records(args.questions + warm_n, seed=3)
    qs = [{"question_id": f"q{i}", "question": r["question"], "task": "math"} for i, r in enumerate(recs)]
    qs, warm_qs = qs[: args.questions], qs[args.questions :]

    eng = VLLMEngine(
        model,
        dtype=args.dtype,
        max_model_len=2048,
        enable_lora=False,
        cpu_kvcache_gb=2,
        max_num_seqs=args.max_num_seqs,
        enforce_eager=not args.cuda_graphs,
    )
    vllm_block_size = eng.llm.llm_engine.vllm_config.cache_config.block_size
    t0 = time.perf_counter()
    _loop(
        eng, warm_qs, args.samples, _settings(args, 10_000)
    )  # warm-up: every batch shape, on other questions
    warm_s = time.perf_counter() - t0

    features = {"logprobs": 0, **eng._flat, "stop": list(STOP_STRINGS), "include_stop_str_in_output": True}
    vocab = len(eng.tokenizer)
    runs: Runs = {}
    for rep in range(args.repeats):
        _repeat(eng, args, qs, rep, features, vocab, runs)
    sweep = _sweep(eng, args, vocab)
    eng.close()

    if args.hf_questions:
        hf = HFEngine(model, dtype=args.dtype, batch_size=32)
        htrajs, hdt, htoks = _loop(hf, qs[: args.hf_questions], args.samples, _settings(args, 1))
        _record(
            runs, "rollout loop (hf)", htoks, hdt, _mean_context([s for t in htrajs for s in t.action_spans])
        )

    rows = _rows(runs)
    result = {
        "rows": rows,
        **_ratios(rows),
        "context_sweep": sweep,
        "warmup_s": round(warm_s, 1),
        "settings": vars(args) | {"model": model},
        "cpus": os.cpu_count(),
        "vllm_block_size": vllm_block_size,
    }
    _print(args, rows, result, sweep)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
