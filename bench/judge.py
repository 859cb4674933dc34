"""Rule process judge on gold solutions: how many gold steps does it rate GOOD (old judge vs new)?

    python bench/judge.py [--gsm8k PATH] [--limit 2000] [--toy 200] [--hotpotqa PATH] [--old-rev REV]
                          [--samples GENERATE_DIR:JUDGE_DIR ...] [--out FILE.json]

A strict process judge must rate the mistakes of tests/unit/test_rule_judge.py BAD and gold work GOOD; this
measures the second half on:

- real GSM8K gold (`--gsm8k`, first `--limit` problems): each calculator note `<<expr=value>>` replayed as a
  `<math_exp>` step (swirl.data.demonstrations.math_gold_actions) with the real calculator's observation,
  then `<answer>gold</answer>`. Solutions that skip notes (a value computed in prose) or use a quantity in two
  branches are gold for a human but no calculation tree, so this is a lower bound of the judge's agreement;
- the toy worlds' gold for every split (`--toy` records each): arithmetic notes as above; two-hop: a search
  for each supporting title in hop order, answered by the real BM25 retriever over the split's pooled corpus
  (top_k=1, the pipeline's 1,500 characters), then the answer;
- real HotpotQA gold (`--hotpotqa`, the mini-dev file; skipped when absent), the same way as two-hop.

Metrics: steps GOOD = share of gold steps rated GOOD; episodes all GOOD = share of gold episodes whose every
step is GOOD (what the process filter keeps). The old judge is `git show REV:swirl/judging/rules.py`
(`--old-rev`, default the lenient judge the strict one replaced; imported from a temporary file; skipped when
git cannot show it). Also: the new judge on GSM8K gold with one
of its settings changed at a time (`ABLATIONS`: re-use rule, free constants, number words), and its most
common BAD reasons there.

`--samples GENERATE_DIR:JUDGE_DIR` (repeatable): a policy's own sampled trajectories from a store (a generate
output and the judge output of the same round, which holds each trajectory's outcome), re-judged by the
current judge: precision (correct among trajectories whose every step is GOOD) and recall (GOOD among the
correct ones), the process filter's agreement with the outcome. Prints Markdown tables and writes
bench/results/judge.json.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result
from swirl.data.demonstrations import math_gold_actions, search_gold_queries
from swirl.tools.calculator import calculate

DEFAULT_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
DEFAULT_HOTPOTQA = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpot_minidev_distractor_v1.json"
Judge = Callable[[list[dict[str, str]], str, str, bool], tuple[str, str]]
Episode = tuple[str, list[tuple[str, str | None]], bool]  # question, [(action, observation)], math


LENIENT = "dabc536^"  # the commit before the strict judge: the lenient rules it replaced


def old_judge(rev: str) -> Judge | None:
    """rule_process_label of swirl/judging/rules.py at git revision `rev` (None when git cannot show it)."""
    try:
        src = subprocess.run(
            ["git", "show", f"{rev}:swirl/judging/rules.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = tempfile.mkdtemp(prefix="judge-old-")
    path = os.path.join(folder, "rules_head.py")
    Path(path).write_text(src)
    spec = importlib.util.spec_from_file_location("rules_head", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return mod.rule_process_label


# ------------------------------------------------------------------------------------------ episodes
def math_episode(question: str, solution: str, answer: str) -> Episode:
    steps: list[tuple[str, str | None]] = []
    for action in math_gold_actions(solution):
        expr = re.search(r"<math_exp>(.*)</math_exp>", action, re.DOTALL)
        steps.append((action, calculate(expr.group(1) if expr else "")))
    return question, [*steps, (f"<answer>{answer}</answer>", None)], True


def search_episodes(records: list[dict[str, Any]]) -> list[Episode]:
    """Gold episodes of HotpotQA-format records, observed through BM25 over their pooled corpus."""
    from swirl.data.corpus import corpus_from_questions
    from swirl.data.loaders import parse_hotpotqa
    from swirl.tables import to_table
    from swirl.tools.config import SearchConfig
    from swirl.tools.search import build_retriever, search_observation

    rows = [parse_hotpotqa(r, f"record {i}", "dev", "hotpotqa", i) for i, r in enumerate(records)]
    corpus, _ = corpus_from_questions([to_table("questions", rows)])
    cfg = SearchConfig(retriever="bm25", top_k=1)  # the pipeline default: 1500 characters
    retriever = build_retriever(corpus, cfg)
    out: list[Episode] = []
    for row in rows:
        queries = search_gold_queries(json.loads(row["metadata"]))
        if not queries:
            continue
        steps: list[tuple[str, str | None]] = [
            (f"<search_query>{q}</search_query>", search_observation(retriever, q, cfg)) for q in queries
        ]
        out.append((row["question"], [*steps, (f"<answer>{row['answers'][0]}</answer>", None)], False))
    return out


def gsm8k_episodes(path: str, limit: int) -> list[Episode]:
    from swirl.data.loaders import gsm8k_gold

    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if len(out) >= limit:
                break
            rec = json.loads(line)
            out.append(math_episode(rec["question"], rec["answer"], gsm8k_gold(rec["answer"])))
    return out


# ------------------------------------------------------------------------------------------- scoring
def score(
    judge: Judge, episodes: list[Episode], reasons: collections.Counter | None = None
) -> dict[str, Any]:
    steps = good = whole = 0
    for question, turns, math in episodes:
        msgs = [{"role": "user", "content": f"Question: {question}"}]
        all_good = True
        for action, obs in turns:
            label, why = judge(msgs, question, action, math)
            steps += 1
            good += label == "GOOD"
            if label != "GOOD":
                all_good = False
                if reasons is not None:
                    reasons[re.sub(r"\s*[:(].*", "", why)] += 1
            msgs.append({"role": "assistant", "content": action})
            if obs is not None:
                msgs.append({"role": "user", "content": obs})
        whole += all_good
    return {
        "episodes": len(episodes),
        "steps": steps,
        "steps_good": round(good / max(steps, 1), 4),
        "episodes_all_good": round(whole / max(len(episodes), 1), 4),
    }


BRIEF_CONSTANTS = ("2", "3", "4", "7", "10", "12", "24", "60", "100", "1000", "0.5")
ABLATIONS: dict[str, dict[str, Any]] = {
    "default (re-use: parent; constants and number words on)": {},
    "re-use: strict (never)": {"REUSE": "strict"},
    "re-use: latest (when it consumes the latest result)": {"REUSE": "latest"},
    "no free constants": {"CONSTANTS": frozenset()},
    "constants 2 3 4 7 10 12 24 60 100 1000 0.5 only": {
        "CONSTANTS": frozenset(Fraction(x) for x in BRIEF_CONSTANTS)
    },
    "no number words": {"NUMBER_WORDS": False},
    "no constants, no number words, re-use strict": {
        "CONSTANTS": frozenset(),
        "NUMBER_WORDS": False,
        "REUSE": "strict",
    },
}


def ablate(episodes: list[Episode]) -> dict[str, Any]:
    """The new judge on GSM8K gold with one setting of swirl.judging.rules changed at a time."""
    from swirl.judging import rules

    out = {}
    for name, change in ABLATIONS.items():
        saved = {k: getattr(rules, k) for k in change}
        try:
            for k, v in change.items():
                setattr(rules, k, v)
            out[name] = score(rules.rule_process_label, episodes)
        finally:
            for k, v in saved.items():
                setattr(rules, k, v)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from swirl.judging.rules import rule_process_label as new

    judges: dict[str, Judge] = {"new": new}
    old = old_judge(args.old_rev)
    if old is not None:
        judges = {"old": old, "new": new}
    sets: dict[str, list[Episode]] = {}
    if os.path.exists(args.gsm8k):
        sets["gsm8k train (real)"] = gsm8k_episodes(args.gsm8k, args.limit)
    from swirl.data.loaders import gsm8k_gold
    from swirl.data.toy_arithmetic import arithmetic_records
    from swirl.data.toy_twohop import twohop_records
    from swirl.data.toysplits import SPLITS

    for split in SPLITS:
        sets[f"toy arithmetic {split}"] = [
            math_episode(r["question"], r["answer"], gsm8k_gold(r["answer"]))
            for r in arithmetic_records(args.toy, 0, split)
        ]
    for split in SPLITS:
        sets[f"toy two-hop {split}"] = search_episodes(twohop_records(args.toy, 0, split))
    if args.hotpotqa and os.path.exists(args.hotpotqa):
        with open(args.hotpotqa, encoding="utf-8") as f:
            sets["hotpotqa mini-dev (real)"] = search_episodes(json.load(f)[: args.limit])
    results: dict[str, Any] = {}
    reasons: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for name, episodes in sets.items():
        results[name] = {
            j: score(fn, episodes, reasons if (j == "new" and name.startswith("gsm8k")) else None)
            for j, fn in judges.items()
        }
    ablations = ablate(sets["gsm8k train (real)"]) if "gsm8k train (real)" in sets else {}
    return {
        "gsm8k": os.path.relpath(args.gsm8k, ROOT) if os.path.exists(args.gsm8k) else None,
        "limit": args.limit,
        "toy_records_per_split": args.toy,
        "judges": list(judges),
        "results": results,
        "gsm8k_bad_reasons_new": dict(reasons.most_common(args.reasons)),
        "gsm8k_ablations_new": ablations,
        "samples": {pair: agreement(*pair.split(":"), judges) for pair in args.samples},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _rows(folder: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return [r for f in sorted(Path(folder).glob("shard-*.parquet")) for r in pq.read_table(f).to_pylist()]


def agreement(generate_dir: str, judge_dir: str, judges: dict[str, Judge]) -> dict[str, Any]:
    """Each judge's process label of a round's own trajectories against their outcome (from the round's judge
    output), measured as the filter measures it (swirl.subtrajectories.judge_agreement)."""
    import numpy as np

    from swirl.subtrajectories import judge_agreement

    correct = {r["trajectory_id"]: bool(r["outcome_correct"]) for r in _rows(judge_dir)}
    rows = _rows(generate_dir)
    ok = np.array([correct[row["trajectory_id"]] for row in rows], dtype=bool)
    out: dict[str, Any] = {}
    for name, judge in judges.items():
        good = []
        for row in rows:
            msgs = [dict(m) for m in row["messages"]]
            question = msgs[0]["content"].rpartition("Question:")[2].strip()
            math = "<math_exp>" in msgs[0]["content"]
            good.append(
                all(
                    judge(msgs[:i], question, m["content"] or "", math)[0] == "GOOD"
                    for i, m in enumerate(msgs)
                    if m["role"] == "assistant"
                )
            )
        all_good = np.array(good, dtype=bool)
        pools = {
            "none": np.ones_like(ok),
            "process": all_good,
            "outcome": ok,
            "process_outcome": all_good & ok,
        }
        out[name] = {"trajectories": len(rows), **judge_agreement(pools, {})["all"]}
    return out


def print_table(report: dict[str, Any]) -> None:
    judges = report["judges"]
    head = ["gold set", "episodes", "steps"]
    for j in judges:
        head += [f"{j}: steps GOOD", f"{j}: episodes all GOOD"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in report["results"].items():
        first = r[judges[0]]
        cells = [name, str(first["episodes"]), str(first["steps"])]
        for j in judges:
            cells += [f"{r[j]['steps_good']:.1%}", f"{r[j]['episodes_all_good']:.1%}"]
        print("| " + " | ".join(cells) + " |")
    if report["gsm8k_ablations_new"]:
        print("\nThe new judge on GSM8K gold, one setting changed at a time:\n")
        print("| setting | steps GOOD | episodes all GOOD |\n|---|---:|---:|")
        for name, r in report["gsm8k_ablations_new"].items():
            print(f"| {name} | {r['steps_good']:.1%} | {r['episodes_all_good']:.1%} |")
    if report["samples"]:
        print("\nThe judges on a round's own samples, against the outcome:\n")
        print("| samples | judge | trajectories | process-GOOD | correct | both | precision | recall |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for pair, by_judge in report["samples"].items():
            for j, r in by_judge.items():
                pct = [("—" if r[k] is None else f"{r[k]:.0%}") for k in ("precision", "recall")]
                print(
                    f"| {pair} | {j} | {r['trajectories']} | {r['process_good']} | {r['correct']} | "
                    f"{r['both']} | {pct[0]} | {pct[1]} |"
                )
    print("\nMost common BAD reasons of the new judge on GSM8K gold steps:\n")
    print("| count | reason |\n|---:|---|")
    for why, n in report["gsm8k_bad_reasons_new"].items():
        print(f"| {n} | {why} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gsm8k", default=str(DEFAULT_GSM8K), help="GSM8K JSONL (question, answer with notes)")
    ap.add_argument("--limit", type=int, default=2000, help="problems of the GSM8K / HotpotQA files")
    ap.add_argument("--toy", type=int, default=200, help="toy-world records per world and split")
    ap.add_argument("--hotpotqa", default=str(DEFAULT_HOTPOTQA), help="HotpotQA distractor JSON ('' skips)")
    ap.add_argument("--old-rev", default=LENIENT, help="git revision of the old judge to compare with")
    ap.add_argument(
        "--samples",
        action="append",
        default=[],
        help="GENERATE_DIR:JUDGE_DIR of one round in a store: its own samples, re-judged (precision, recall)",
    )
    ap.add_argument("--reasons", type=int, default=10, help="BAD reasons to list")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "judge.json"))
    args = ap.parse_args(argv)
    report = run(args)
    print_table(report)
    print()
    write_result(report, args.out)


if __name__ == "__main__":
    main()
