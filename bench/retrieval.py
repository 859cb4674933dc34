"""Retrieval benchmark: BM25 vs dense on a HotpotQA distractor file's pooled paragraphs.

Setup (the search tool's real path: loader -> pooled corpus -> retriever): every context paragraph of every
question (500 x 10 for the mini-dev file) is pooled into one corpus, de-duplicated by (title, text) exactly as
the corpus stage does; each question's text is the query, as a model's first search might be.

Metrics. For question q let G(q) be the set of distinct titles in its `supporting_facts` (2 for HotpotQA) and
T_k(q) the set of titles of the top-k retrieved paragraphs. Then
    recall@k = mean over questions of |G(q) ∩ T_k(q)| / |G(q)|
    all@k    = fraction of questions with G(q) ⊆ T_k(q)
(recall@1 is at most 0.5 here, since one paragraph covers one of two titles.) Timings: index build seconds
(tokenising/embedding included, model loading excluded for dense), and queries per second for all questions in
one batched call (how a rollout step searches) and one query at a time.

    python bench/retrieval.py [--hotpotqa PATH] [--retrievers bm25,dense] [--out bench/results/retrieval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_result
from swirl.data.config import DatasetSpec
from swirl.data.corpus import corpus_from_questions
from swirl.data.loaders import load_questions
from swirl.tables import to_table
from swirl.tools.config import SearchConfig
from swirl.tools.search import build_retriever, dense_encoder, pick_device, resolve_dense_model

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hotpotqa" / "hotpot_minidev_distractor_v1.json"


def recall_metrics(gold: list[set[str]], retrieved: list[list[str]], ks: tuple[int, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        per_q = [len(g & set(r[:k])) / len(g) for g, r in zip(gold, retrieved, strict=True)]
        out[f"recall@{k}"] = sum(per_q) / len(per_q)
        out[f"all@{k}"] = sum(g <= set(r[:k]) for g, r in zip(gold, retrieved, strict=True)) / len(gold)
    return out


def run(path: str, retrievers: list[str], device: str, ks: tuple[int, ...] = (1, 5)) -> dict[str, Any]:
    rows, _ = load_questions(DatasetSpec(name="hotpotqa", format="hotpotqa", split="dev", path=path))
    docs, pool = corpus_from_questions([to_table("questions", rows)])
    queries = [r["question"] for r in rows]
    gold = [{t for t, _ in json.loads(r["metadata"])["supporting_facts"]} for r in rows]
    keep = [i for i, g in enumerate(gold) if g]
    queries, gold = [queries[i] for i in keep], [gold[i] for i in keep]
    results: dict[str, Any] = {}
    for kind in retrievers:
        cfg = SearchConfig(retriever=kind, dense_device=device)
        model_load_s = 0.0
        if kind == "dense":  # load once outside the build timing: the cost is per process, not per index
            t0 = time.perf_counter()
            dense_encoder(resolve_dense_model(cfg.dense_model), pick_device(device), cfg.dense_max_seq_length)
            model_load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        retriever = build_retriever(docs, cfg)
        build_s = time.perf_counter() - t0
        k = max(ks)
        t0 = time.perf_counter()
        hits = retriever.search(queries, k)
        batched_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for q in queries[:200]:
            retriever.search([q], k)
        single_qps = min(200, len(queries)) / (time.perf_counter() - t0)
        titles = [[h.title for h in hs] for hs in hits]
        results[kind] = {
            **recall_metrics(gold, titles, ks),
            "index_build_s": round(build_s, 3),
            "model_load_s": round(model_load_s, 3),
            "queries_per_s_batched": round(len(queries) / batched_s, 1),
            "queries_per_s_single": round(single_qps, 1),
            "config": cfg.index_config(),
        }
    import torch

    return {
        "data": os.path.relpath(path, ROOT),
        "questions": len(queries),
        "corpus_documents": pool["documents"],
        "corpus_paragraphs_before_dedup": pool["paragraphs"],
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": pick_device(device),
            "python": platform.python_version(),
        },
    }


def print_table(report: dict[str, Any]) -> None:
    cols = ["recall@1", "recall@5", "all@5", "index_build_s", "queries_per_s_batched", "queries_per_s_single"]
    labels = ["recall@1", "recall@5", "all@5", "build s", "queries/s batched", "queries/s single"]
    title = (
        f"HotpotQA retrieval: {report['questions']} questions, pooled corpus of {report['corpus_documents']} "
        f"paragraphs ({report['machine']['device']}, {report['machine']['cpus']} CPUs)"
    )
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        table.add_column("retriever")
        for label in labels:
            table.add_column(label, justify="right")
        for kind, r in report["results"].items():
            table.add_row(
                kind, *(f"{r[c]:.3f}" if c.startswith(("recall", "all")) else f"{r[c]}" for c in cols)
            )
        Console(width=max(100, Console().width)).print(table)
    except ImportError:
        print(title)
        print("retriever " + " ".join(f"{c:>18}" for c in labels))
        for kind, r in report["results"].items():
            print(f"{kind:<9} " + " ".join(f"{r[c]:>18}" for c in cols))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hotpotqa", default=str(DEFAULT_DATA), help="HotpotQA distractor file (JSON list)")
    ap.add_argument("--retrievers", default="bm25,dense", help="comma-separated: bm25,dense")
    ap.add_argument(
        "--device", default="", help="torch device for dense (default: cuda if available, else cpu)"
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval.json"))
    args = ap.parse_args(argv)
    if not os.path.exists(args.hotpotqa):
        sys.exit(f"{args.hotpotqa}: not found; pass --hotpotqa PATH to a HotpotQA distractor JSON file")
    report = run(args.hotpotqa, [r.strip() for r in args.retrievers.split(",") if r.strip()], args.device)
    print_table(report)
    write_result(report, args.out)


if __name__ == "__main__":
    main()
