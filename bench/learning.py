"""Does a SWiRL round make a real model better? The paper's comparisons at this machine's scale.

    python bench/learning.py [--config configs/learn-cpu.yaml] [--variants base,warmup,sft,swirl_none,...]
                             [--objective swirl_offline|swirl] [--no-warmup]
                             [--gsm8k-train PATH [--gsm8k-train-questions N]]
                             [--gsm8k-test PATH [--gsm8k-test-questions N]] [--hotpotqa PATH]
                             [--warmup-steps N] [--train-templates K] [--datasets PREFIX,...]
                             [--beam-width 3] [--beam-temperature 0.7] [--beam-questions N]
                             [--oreo-learning-rate LR] [--smoke]
                             [--out bench/results/learning.json]

Every variant is one `swirl_round` on the same config with one change, so everything they share (the converted
model, the toy worlds, the trajectories, their judgments and the base model's evaluation) is computed once and
is a store hit afterwards; all are evaluated on the same held-out questions (evaluate.questions per dataset,
the same seed), so each comparison with the base model is paired:

    base                      the policy as configured (no training)
    warmup                    SFT on the training split's gold demonstrations (generate.source: gold: the
                              datasets' own solutions replayed as protocol actions through the real tools), to
                              teach the protocol; with --warmup (the default) every variant below starts from
                              this adapter: it generates with it, trains it further, and is compared with it
    sft                       SFT on trajectories whose every step the process judge rates GOOD and whose
                              answer is right (process + outcome: the paper's SFT baseline's data)
    swirl_none                SWiRL (--objective) with no filter
    swirl_process             ... keeping trajectories whose every step the process judge rates GOOD (the
                              paper's best)
    swirl_outcome             ... keeping trajectories with a correct final answer
    swirl_process_outcome     ... both
    oreo                      OREO (train.objective oreo, docs/method.md §2) on the same trajectories as the
                              swirl_* variants, with no filter (it learns from the failures too: R = the
                              outcome, 1 or 0); evaluated greedily like the others
    oreo_beam                 the oreo variant's policy evaluated with value-guided beam search
                              (evaluate.decoding beam, --beam-width, sampled at --beam-temperature) ranked by
                              the value model it trained (evaluate.value_model = its train output's `value`
                              folder); an evaluation-only round, a row of its own ("... (beam B)"); needs
                              oreo, which runs first. Beam search samples B x B steps where greedy decoding
                              writes one: --beam-questions N evaluates a seeded N of the held-out questions
                              per world instead of all (the same seed: a subset of the others' questions);
                              its row is then left out of the main tables and a third table compares every
                              variant with greedy OREO on those N questions (paired, like the others)

Each held-out dataset says which test it is: the toy worlds' `*_unseen` (templates never trained on), `*_seen`
(the training templates with other numbers and names) and `*_dev` (for choosing settings); with the real-data
options, `gsm8k_test` (real GSM8K test problems; `--gsm8k-train` also adds real GSM8K training problems to the
warm-up's demonstrations and the round's questions) and `hotpotqa` (real HotpotQA dev questions, their own
paragraphs as the search corpus). The real files are the benchmarks' own formats (e.g. ../shared/data/).

The tables give each variant's accuracy per dataset (rule-graded) with its 95% Wilson interval, the gain over
base (and, with the warm-up, over the warm-up adapter) with its paired bootstrap interval and McNemar's exact
p, and Holm's adjusted p over every comparison of the table. The round's filter summary gives the process
judge's agreement with the outcome on the policy's own samples (precision: correct among process-GOOD
trajectories; recall: process-GOOD among correct ones), printed per dataset. The same seed gives the same
table: generation and training are seeded, evaluation is greedy; vLLM on CPU reproduces greedy decoding
exactly in our tests (tests/unit/test_evaluate.py), so the figures are expected to repeat exactly on the same
machine and versions. Writes the table as Markdown and JSON (bench/results/learning.{md,json}).

`--smoke` checks the script's paths end to end in minutes, not what they measure: the config's model served
by the hf engine (no vLLM), 8 training and 4 held-out questions per world, a 10-step warm-up, 2 training
steps per variant, its own store (runs/learn-smoke) and output (bench/results/learning-smoke.{md,json}); its
accuracies mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import write_result

if TYPE_CHECKING:
    from swirl.stages.evaluate import ReportEntry

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "warmup": {
        "generate": {"source": "gold", "samples_per_question": 1},
        "filter": {"strategy": "outcome"},
        "train": {"objective": "sft", "kl_beta": 0.0, "max_steps": 30},
    },
    "sft": {"train": {"objective": "sft", "kl_beta": 0.0}, "filter": {"strategy": "process_outcome"}},
    "swirl_none": {"filter": {"strategy": "none"}},
    "swirl_process": {"filter": {"strategy": "process"}},
    "swirl_outcome": {"filter": {"strategy": "outcome"}},
    "swirl_process_outcome": {"filter": {"strategy": "process_outcome"}},
    # micro-batches of 1024 tokens (2-3 trajectories; gradient accumulation is exact for oreo): OREO keeps two
    # forward graphs (policy, value), and bench/oreo.py measured a peak RSS of 7.6 GB for 1328-token
    # micro-batches on this model, ~14 GB for the 4096-token default with 8 trajectories of ~400 tokens
    "oreo": {
        "filter": {"strategy": "none"},
        "train": {"objective": "oreo", "kl_beta": 0.0, "micro_batch_tokens": 1024},
    },
    "oreo_beam": {"evaluate": {"decoding": "beam"}},  # + the oreo variant's adapter and value model
}
EVAL_ONLY = ("base", "oreo_beam")  # variants that train nothing: their round evaluates the configured policy
NEEDS = {"oreo_beam": "oreo"}  # a variant that evaluates what another one trained

# --smoke: the config's model on the hf engine, a few questions and steps, its own store (see the docstring)
SMOKE_ROOT = "runs/learn-smoke"
SMOKE = {
    "run": {"name": "learn-smoke", "root": SMOKE_ROOT, "experiment": "swirl-learn-smoke"},
    "prepare": {
        "toy_worlds": {
            "dir": f"{SMOKE_ROOT}/data",
            **{f"{w}_{s}": 4 for w in ("arithmetic", "twohop") for s in ("dev", "test", "test_seen")},
            "arithmetic_train": 8,
            "twohop_train": 8,
            "seed": 0,
        },
    },
    "generate": {"shard_questions": 8},
    "train": {"max_steps": 2, "batch_size": 4, "checkpoint_every": 10},
    "evaluate": {"questions": 4, "shard_questions": 4, "bootstrap_resamples": 100},
    "policy": {"kind": "hf", "merge_adapter": False},
}
# a short warm-up, long enough for some right answers among its samples (OREO needs both outcomes)
SMOKE_VARIANTS = {"warmup": {"train": {"max_steps": 10, "learning_rate": 1e-3}}}


def only_datasets(data: dict[str, Any], prefixes: str | None, train_templates: int | None) -> dict[str, Any]:
    """The config with only the datasets whose names start with one of `prefixes` (comma-separated; all when
    None) and the toy worlds' training files limited to their first `train_templates` templates."""
    out = _merge(data, {})
    if prefixes:
        keep = tuple(p.strip() for p in prefixes.split(",") if p.strip())
        out["ingest"] = {
            **out["ingest"],
            "datasets": [d for d in out["ingest"]["datasets"] if d["name"].startswith(keep)],
        }
        if not out["ingest"]["datasets"]:
            names = [d["name"] for d in data["ingest"]["datasets"]]
            raise SystemExit(f"--datasets {prefixes}: no dataset name starts so (the config has {names})")
    if train_templates is not None:
        if not out["prepare"].get("toy_worlds"):
            raise SystemExit("--train-templates: the config writes no toy worlds (prepare.toy_worlds)")
        out["prepare"] = _merge(out["prepare"], {"toy_worlds": {"train_templates": train_templates}})
    return out


def with_real_data(
    data: dict[str, Any],
    gsm8k_train: str | None = None,
    gsm8k_train_questions: int | None = None,
    gsm8k_test: str | None = None,
    gsm8k_test_questions: int | None = None,
    hotpotqa: str | None = None,
    hotpotqa_questions: int | None = None,
) -> dict[str, Any]:
    """The config with real benchmark files added: `gsm8k` (training problems: gold demonstrations for the
    warm-up, questions for the round), `gsm8k_test` and `hotpotqa` (held out; HotpotQA's own paragraphs are
    its search corpus). `*_questions`: a seeded sample of that many (all when None)."""
    added = [
        {"name": name, "format": fmt, "split": split, "path": path, "limit": n}
        for name, fmt, split, path, n in (
            ("gsm8k", "gsm8k", "train", gsm8k_train, gsm8k_train_questions),
            ("gsm8k_test", "gsm8k", "test", gsm8k_test, gsm8k_test_questions),
            ("hotpotqa", "hotpotqa", "dev", hotpotqa, hotpotqa_questions),
        )
        if path
    ]
    for d in added:
        if not os.path.exists(d["path"]):
            flag = "--" + d["name"].replace("_", "-")
            raise SystemExit(f"{flag}: no file {d['path']!r}; give the path of the benchmark's file")
    out = _merge(data, {})
    out["ingest"] = {**out["ingest"], "datasets": [*out["ingest"]["datasets"], *added]}
    math = list(out["judge"]["outcome"]["math_datasets"])
    if any(d["format"] == "gsm8k" for d in added) and "gsm8k" not in math:
        out["judge"] = _merge(out["judge"], {"outcome": {"math_datasets": [*math, "gsm8k"]}})
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def variant_config(
    data: dict[str, Any],
    name: str,
    objective: str | None,
    start_adapter: str | None = None,
    beam: dict[str, Any] | None = None,
    smoke: bool = False,
    oreo_learning_rate: float | None = None,
    warmup_steps: int | None = None,
) -> Any:
    """The config of one variant; `start_adapter`: the warm-up adapter the trained variants generate with and
    continue training (train.lora.init_adapter defaults to the policy's adapter). `beam` (oreo_beam):
    the adapter to evaluate, its value model, the beam width and temperature."""
    from swirl.config import config_from_dict

    over = VARIANTS[name]
    if smoke:
        over = _merge(over, SMOKE_VARIANTS.get(name, {}))
    if name == "warmup" and warmup_steps:
        over = _merge(over, {"train": {"max_steps": warmup_steps}})
    if name.startswith("swirl") and objective:
        over = _merge(over, {"train": {"objective": objective}})
    if name == "oreo" and oreo_learning_rate:  # the policy's rate only: the value model keeps the config's
        lr = data["train"]["learning_rate"]
        over = _merge(
            over, {"train": {"learning_rate": oreo_learning_rate, "oreo": {"value_learning_rate": lr}}}
        )
    if start_adapter and name not in ("base", "warmup"):
        over = _merge(over, {"policy": {"adapter": start_adapter}})
    if name == "oreo_beam":
        if not beam:
            raise ValueError("oreo_beam evaluates the oreo variant's policy: run oreo first")
        over = _merge(
            over,
            {
                "policy": {"adapter": beam["adapter"]},
                "evaluate": {
                    "value_model": beam["value_model"],
                    "beam_width": beam["width"],
                    "temperature": beam["temperature"],
                    **({"questions": beam["questions"]} if beam.get("questions") else {}),
                },
            },
        )
    cfg = _merge(data, over)
    if name in EVAL_ONLY:  # evaluation only: nothing is trained
        cfg["stages"] = [s for s in cfg["stages"] if s in ("prepare", "ingest", "corpus", "evaluate")]
    cfg["evaluate"] = _merge(cfg.get("evaluate", {}), {"base": True, "trained": name not in EVAL_ONLY})
    return config_from_dict(cfg, source=f"bench/learning.py:{name}")


def variant_label(name: str, warm: bool, beam_width: int) -> str:
    """The variant's row in the tables: warmup+NAME when it started from the warm-up adapter."""
    label = f"oreo (beam {beam_width})" if name == "oreo_beam" else name
    return f"warmup+{label}" if warm and name not in ("base", "warmup") else label


def judge_table(rows: list[dict[str, Any]]) -> str:
    """The process judge against the outcome on a round's own samples, one row per (variant, dataset)."""

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.0f}%"

    lines = [
        "Process judge vs outcome on each round's own samples (what it generated before training)",
        "",
        "| round | dataset | process-GOOD | correct | both | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['dataset']} | {r['process_good']} | {r['correct']} | {r['both']} | "
            f"{pct(r['precision'])} | {pct(r['recall'])} |"
        )
    return "\n".join(lines)


def _cell(c: Any) -> dict[str, Any]:
    return {
        "variant": c.policy,
        "dataset": c.dataset,
        "accuracy": c.rule.rate,
        "low": c.rule.low,
        "high": c.rule.high,
        "n": c.rule.n,
        **(
            {
                "gain": c.vs_base.diff,
                "gain_low": c.vs_base.diff_low,
                "gain_high": c.vs_base.diff_high,
                "mcnemar_p": c.vs_base.mcnemar_p,
            }
            if c.vs_base
            else {}
        ),
        "episode": dict(c.episode),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/learn-cpu.yaml")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument(
        "--objective", default=None, help="objective of the swirl_* variants (default: the config's)"
    )
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="train the variants from the base model, not from the warm-up adapter",
    )
    p.add_argument("--beam-width", type=int, default=3, help="B of the oreo_beam variant's beam search")
    p.add_argument(
        "--beam-temperature",
        type=float,
        default=0.7,
        help="sampling temperature of the beam search's candidate steps (beam decoding samples)",
    )
    p.add_argument(
        "--beam-questions",
        type=int,
        default=None,
        help="held-out questions per world for oreo_beam (default: evaluate.questions, as the others)",
    )
    p.add_argument(
        "--oreo-learning-rate",
        type=float,
        default=None,
        help="the oreo variant's policy learning rate (default: train.learning_rate, which its value model "
        "keeps)",
    )
    p.add_argument(
        "--warmup-steps", type=int, default=None, help="training steps of the warm-up (default: 30)"
    )
    p.add_argument(
        "--train-templates",
        type=int,
        default=None,
        help="train on the first N training templates of each toy world only (prepare.toy_worlds."
        "train_templates; the held-out files stay the same): accuracy against the number of templates",
    )
    p.add_argument(
        "--datasets",
        default=None,
        help="comma-separated prefixes of the config's dataset names to keep (e.g. arith: the arithmetic "
        "world only)",
    )
    p.add_argument("--gsm8k-train", default=None, help="real GSM8K training file (train.jsonl)")
    p.add_argument("--gsm8k-train-questions", type=int, default=None, help="a seeded sample of it")
    p.add_argument("--gsm8k-test", default=None, help="real GSM8K test file (test.jsonl), evaluated")
    p.add_argument("--gsm8k-test-questions", type=int, default=None, help="a seeded sample (default: all)")
    p.add_argument("--hotpotqa", default=None, help="real HotpotQA dev file (distractor JSON), evaluated")
    p.add_argument("--hotpotqa-questions", type=int, default=None, help="a seeded sample (default: all)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="check the paths end to end on the tiny model and the hf engine (minutes; see the docstring)",
    )
    p.add_argument("--out", default=None, help="default: bench/results/learning.json (-smoke with --smoke)")
    return p


def _round_data(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The configured (or, with --smoke, the smoke) base config and the config data every variant starts
    from: the chosen datasets, the real data files, the smoke settings."""
    from swirl.config import load_config

    base_cfg = load_config(args.config)
    data = with_real_data(
        only_datasets(base_cfg.model_dump(mode="json"), args.datasets, args.train_templates),
        args.gsm8k_train,
        args.gsm8k_train_questions,
        args.gsm8k_test,
        args.gsm8k_test_questions,
        args.hotpotqa,
        args.hotpotqa_questions,
    )
    if args.smoke:
        data = _merge(data, SMOKE)
        data["ingest"]["datasets"] = [
            {
                **d,
                "path": d["path"].replace(
                    base_cfg.prepare.toy_worlds.dir, SMOKE["prepare"]["toy_worlds"]["dir"]
                ),
            }
            for d in data["ingest"]["datasets"]
        ]
        base_cfg = variant_config(data, "base", None, smoke=True)
    return base_cfg, data


def _variant_names(variants: str, warmup: bool) -> list[str]:
    """The variants to run, in order: with the warm-up first when the others start from its adapter, and
    each variant that another one needs before it."""
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if warmup and any(n not in ("base", "warmup") for n in names) and "warmup" not in names:
        names.insert(1 if names[:1] == ["base"] else 0, "warmup")  # the variants start from its adapter
    for name, needed in NEEDS.items():
        if name in names and needed not in names[: names.index(name)]:
            names.insert(names.index(name), needed)
    return names


@dataclass
class _Runs:
    """What the variants' rounds produced, gathered as they run."""

    entries: list[ReportEntry] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    judge_rows: list[dict[str, Any]] = field(default_factory=list)  # the process judge vs the outcome
    start_adapter: str | None = None  # the warm-up adapter the trained variants start from
    beam: dict[str, Any] | None = None  # what oreo_beam evaluates: the oreo variant's policy and value model


def _add_entries(runs: _Runs, store: Any, name: str, label_name: str, cfg: Any, result: Any) -> None:
    """The round's evaluations of the variant's policy, as report entries (once each)."""
    from swirl.stages.evaluate import ReportEntry

    label = "base" if name in EVAL_ONLY else "trained"
    for key, out in result.stages.items():
        parts = key.split("/")
        if parts[0] == "eval" and len(parts) == 3 and parts[2] == label:
            ref = store.ref("evaluate", out.version)
            if not any(e.ref.version == ref.version for e in runs.entries):
                trained_on = {"base": "", "oreo_beam": "oreo"}.get(name, cfg.train.objective)
                runs.entries.append(ReportEntry(label_name, trained_on, ref))


def _add_judge_rows(runs: _Runs, store: Any, name: str, label_name: str, result: Any) -> None:
    """The round's filter summaries: the process judge against the outcome, per dataset."""
    if name in EVAL_ONLY or name == "warmup":
        return
    for key, out in result.stages.items():
        if key.startswith("filter/"):
            agreement = store.ref("filter", out.version).summary.get("judge_agreement", {})
            for ds, a in agreement.items():
                if ds != "all":
                    runs.judge_rows.append({"variant": label_name, "dataset": ds, **a})


def _run_variants(args: argparse.Namespace, data: dict[str, Any], store: Any, names: list[str]) -> _Runs:
    """One `swirl_round` per variant, in order; the engines are closed at the end."""
    from flows.round import swirl_round
    from swirl.stages.train import value_path
    from tasks.engines import close_engines

    runs = _Runs()
    try:
        for name in names:
            cfg = variant_config(
                data,
                name,
                args.objective,
                runs.start_adapter,
                runs.beam,
                args.smoke,
                args.oreo_learning_rate,
                args.warmup_steps,
            )
            t0 = time.perf_counter()
            result = swirl_round(cfg, keep_engines=True)
            runs.timings[name] = round(time.perf_counter() - t0, 1)
            label_name = variant_label(name, bool(runs.start_adapter), args.beam_width)
            _add_entries(runs, store, name, label_name, cfg, result)
            _add_judge_rows(runs, store, name, label_name, result)
            if name == "warmup" and args.warmup:
                runs.start_adapter = result.stages["train"].adapter
            if name == "oreo":
                trained = store.ref("train", result.stages["train"].version)
                runs.beam = {
                    "adapter": result.stages["train"].adapter,
                    "value_model": value_path(trained),
                    "width": args.beam_width,
                    "temperature": args.beam_temperature,
                    "questions": args.beam_questions,
                }
            print(f"{name}: {runs.timings[name]} s", flush=True)
    finally:
        close_engines()
    return runs


def _report(args: argparse.Namespace, store: Any, base_cfg: Any, runs: _Runs) -> tuple[str, list, list, list]:
    """The Markdown tables and their cells: against base, against the warm-up adapter, and (with
    --beam-questions) on the beam search's questions against greedy OREO."""
    from swirl.evaluation.config import EvaluateConfig
    from swirl.evaluation.report import markdown_report
    from swirl.stages.evaluate import report_cells

    cfg_eval: EvaluateConfig = base_cfg.evaluate
    warm = bool(runs.start_adapter)
    beam_label = variant_label("oreo_beam", warm, args.beam_width)
    beam_subset: dict[str, list[str]] = {}  # dataset -> the questions a --beam-questions run evaluated
    if args.beam_questions is not None:
        for e in runs.entries:
            if e.policy == beam_label:
                ids = store.read_ref(e.ref).column("question_id").to_pylist()
                beam_subset[str(e.ref.summary.get("dataset"))] = ids
    entries = runs.entries
    if beam_subset:  # not the others' questions: the beam row has a table of its own below
        entries = [e for e in entries if e.policy != beam_label]
    cells = report_cells(store, entries, cfg_eval)
    title = f"SWiRL at CPU scale: {base_cfg.policy.model}, {args.config}"
    md = markdown_report(cells, title)
    warm_cells = []
    if warm and any(e.policy.startswith("warmup+") for e in entries):
        warm_cells = report_cells(
            store, [e for e in entries if e.policy != "base"], cfg_eval, baseline="warmup"
        )
        md += "\n\n" + markdown_report(
            warm_cells,
            'The same policies compared with the warm-up adapter ("gain vs base" below = gain vs warmup)',
        )
    subset_cells = []
    if beam_subset:
        greedy = variant_label("oreo", warm, args.beam_width)
        n = ", ".join(f"{len(v)} of {d}" for d, v in beam_subset.items())
        subset_cells = report_cells(store, runs.entries, cfg_eval, baseline=greedy, question_ids=beam_subset)
        md += "\n\n" + markdown_report(
            subset_cells,
            f'On the questions the beam search evaluated ({n}), compared with greedy {greedy} ("gain vs '
            f'base" below = gain vs {greedy})',
        )
    if runs.judge_rows:
        md += "\n\n" + judge_table(runs.judge_rows)
    return md, cells, warm_cells, subset_cells


def main() -> int:
    args = _parser().parse_args()
    if args.out is None:
        args.out = "bench/results/learning-smoke.json" if args.smoke else "bench/results/learning.json"
    for k, v in {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "VLLM_NO_USAGE_STATS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TOKENIZERS_PARALLELISM": "false",
    }.items():
        os.environ.setdefault(k, v)

    from swirl.store import Store

    base_cfg, data = _round_data(args)
    store = Store(base_cfg.run.store_root)
    runs = _run_variants(args, data, store, _variant_names(args.variants, args.warmup))
    md, cells, warm_cells, subset_cells = _report(args, store, base_cfg, runs)
    print(md)
    result = {
        "config": args.config,
        "model": base_cfg.policy.model,
        "objective": args.objective or base_cfg.train.objective,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "seconds": runs.timings,
        "warmup_adapter": runs.start_adapter,
        "oreo": runs.beam,
        "oreo_learning_rate": args.oreo_learning_rate,
        "smoke": args.smoke,
        "cells": [_cell(c) for c in cells],
        "cells_vs_warmup": [_cell(c) for c in warm_cells],
        "cells_on_beam_questions": [_cell(c) for c in subset_cells],
        "judge_agreement": runs.judge_rows,
    }
    write_result(result, args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
