"""The beam search's value scorer: one cached pass over the tokens a beam's candidates share vs each candidate
run whole.

    python bench/value_scorer.py [--config configs/learn-cpu.yaml] [--value-dir DIR | --tiny]
                                 [--questions 6] [--width 3] [--step-tokens 45] [--repeats 2]
                                 [--out bench/results/value_scorer.json]

What value-guided beam search (swirl/evaluation/beam.py) asks of the scorer at one step: for each question,
width x width candidates, each the question's prompt (the config's worked example as chat turns and the
question, as evaluation renders them) and k = 1..4 steps of its own (`--step-tokens` tokens each, random ids
of the vocabulary: the cost does not depend on which tokens they are); one scorer call per question, as the
beam search makes them.

    whole    ValueScorer(min_shared=0): every candidate run from its first token (the baseline)
    shared   ValueScorer's default: the tokens the call's candidates share are run once and their key/value
             cache is repeated for the rest of each candidate

The model is the config's policy model (made by `swirl prepare CONFIG` or bench/learning.py, ~35 s, no
download); the value model is `--value-dir` (a train output's `value` folder) or, by default, a fresh one with
seeded random weights (speed and agreement do not depend on training). `--tiny`: swirl.models.tiny instead (a
smoke test of the script, not a measurement). Figures: candidates/s and seconds per question-step (best of
`--repeats`), the ratio against `whole`, and the largest difference between the two designs' values. Prints a
table and writes bench/results/value_scorer.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result


def random_value_model(model_dir: str, folder: str) -> str:
    """A value folder of the trainer's shape (r 16 on all linear layers) with seeded random, non-zero weights:
    lora_B ~ N(0, 0.02), the head ~ N(0, 0.05)."""
    from swirl.models.random_lora import save_random_value_model
    from swirl.training.config import LoraSection

    lora = LoraSection(rank=16, alpha=32).peft_config()
    return save_random_value_model(model_dir, folder, lora=lora, std=0.02, head_std=0.05)


def question_prompts(cfg: Any, tokenizer: Any, n: int) -> list[list[int]]:
    """The first n held-out arithmetic questions' prompts, rendered as evaluation renders them."""
    from swirl.data.loaders import load_questions
    from swirl.episodes import start_episodes
    from swirl.rollout import RolloutSettings

    spec = next(d for d in cfg.ingest.datasets if d.split != "train" and d.format == "gsm8k")
    rows = load_questions(spec)[0][:n]

    settings = RolloutSettings(max_steps=cfg.generate.max_steps_math)
    starts = start_episodes(tokenizer, [dict(r) for r in rows], cfg.generate, "math", 1, settings)
    return [list(t.token_ids) for t in starts]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/learn-cpu.yaml")
    p.add_argument("--value-dir", default=None)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--questions", type=int, default=6)
    p.add_argument("--width", type=int, default=3)
    p.add_argument("--step-tokens", type=int, default=45)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="bench/results/value_scorer.json")
    args = p.parse_args()

    import torch
    from transformers import AutoTokenizer

    from swirl.config import load_config
    from swirl.models.value import ValueScorer

    cfg = load_config(args.config)
    tmp = tempfile.mkdtemp(prefix="value-scorer-")
    if args.tiny:
        from swirl.models.tiny import build_tiny_model

        model_dir = build_tiny_model(os.path.join(tmp, "tiny"), seed=0)
    else:
        model_dir = cfg.policy.model
        if not os.path.exists(os.path.join(model_dir, "config.json")):
            print(
                f"{model_dir}: no model there; make it with `swirl prepare {args.config}` (or run "
                "bench/learning.py once)",
                file=sys.stderr,
            )
            return 2
    value_dir = args.value_dir or random_value_model(model_dir, os.path.join(tmp, "value"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = question_prompts(cfg, tokenizer, args.questions)
    rng = random.Random(0)
    vocab = tokenizer.vocab_size
    calls: list[list[list[int]]] = []  # one scorer call per (question, step): its width^2 candidates
    for prompt in prompts:
        for step in range(1, 5):
            calls.append(
                [
                    prompt
                    + [rng.randrange(vocab) for _ in range(step * args.step_tokens + rng.randrange(-10, 10))]
                    for _ in range(args.width * args.width)
                ]
            )
    candidates = sum(len(c) for c in calls)
    tokens = sum(len(x) for c in calls for x in c)
    torch.set_num_threads(os.cpu_count() or 1)

    results: dict[str, dict[str, Any]] = {}
    values: dict[str, list[float]] = {}
    for design, min_shared in (("whole", 0), ("shared", 32)):
        scorer = ValueScorer(model_dir, value_dir, min_shared=min_shared, device="cpu")
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = [v for c in calls for v in scorer(c)]
            best = min(best, time.perf_counter() - t0)
        values[design] = out
        results[design] = {
            "seconds": round(best, 3),
            "candidates_per_s": round(candidates / best, 1),
            "seconds_per_question_step": round(best / len(calls), 3),
        }
        scorer.close()
    for design in results:
        results[design]["speedup_vs_whole"] = round(
            results["whole"]["seconds"] / results[design]["seconds"], 2
        )
    max_diff = max(abs(a - b) for a, b in zip(values["whole"], values["shared"], strict=True))
    prompt_tokens = sum(len(x) for x in prompts) / len(prompts)

    lines = [
        f"# Value scorer: {'tiny model (smoke)' if args.tiny else model_dir}, beam width {args.width}",
        "",
        f"{len(calls)} scorer calls ({args.questions} questions x steps 1-4), {candidates} candidates, "
        f"{tokens} tokens; mean prompt {prompt_tokens:.0f} tokens, {args.step_tokens} tokens per step; "
        f"best of {args.repeats}; largest |V_shared - V_whole| = {max_diff:.2e}",
        "",
        "| design | seconds | candidates/s | s per question-step | speed-up vs whole |",
        "|---|---:|---:|---:|---:|",
    ]
    for design, r in results.items():
        lines.append(
            f"| {design} | {r['seconds']} | {r['candidates_per_s']} | {r['seconds_per_question_step']} | "
            f"{r['speedup_vs_whole']}x |"
        )
    md = "\n".join(lines)
    print(md)
    report = {
        "model": "tiny" if args.tiny else model_dir,
        "value_dir": args.value_dir or "random",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "width": args.width,
        "questions": args.questions,
        "step_tokens": args.step_tokens,
        "mean_prompt_tokens": prompt_tokens,
        "calls": len(calls),
        "candidates": candidates,
        "tokens": tokens,
        "max_abs_diff": max_diff,
        "results": results,
    }
    write_result(report, args.out, md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
