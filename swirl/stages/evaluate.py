"""Evaluate: a policy on a seeded sample of a dataset's questions -> the `eval_results` table; and the report.

One output per (policy, dataset). A policy is the run's model with an optional LoRA adapter; its identity
(model and adapter files) is an input of the version, so a new adapter re-evaluates only that policy, never
the base model. The episode is the generate stage's protocol (same prompts, tools and step limits,
docs/method.md §1.5), decoded greedily by default, or by OREO's value-guided beam search
(`evaluate.decoding: beam`, docs/method.md §2; swirl/evaluation/beam.py) with a trained value model, or by the
same search ranked by the policy's log-prob or at random (`best_of_logprob`, `beam_random`: controls). Each
row holds the whole episode (`messages`), the rule verdicts (numeric equality for math; EM, F1 and "gold
contained in prediction" for QA) and, when `llm_judge` is on, the judge model's YES/NO with its text.
Sharded and resumable like generate: after a crash a re-run evaluates only the questions not yet stored.

`Report` compares the policies of a round on the same questions (paired: McNemar's exact test and a bootstrap
interval of the gain over the base policy) and writes `report.md`, `report.json` and `heatmap.png` (the
cross-task table of docs/method.md §1.6: policy trained on X, evaluated on every dataset) as the `eval_report`
stage output.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from swirl.data.config import DatasetSpec
from swirl.data.loaders import sample_rows
from swirl.engines.base import Engine
from swirl.engines.config import EngineConfig, EngineSpec, engine_identity, model_fingerprint
from swirl.episodes import (
    GenerateConfig,
    protocol_examples,
    protocol_template,
    rollout_settings,
    run_episodes,
    start_episodes,
    tool_kind,
)
from swirl.evaluation.beam import (
    SEARCH_VERSION,
    Ranker,
    Scorer,
    beam_search,
    logprob_ranker,
    random_ranker,
    value_ranker,
)
from swirl.evaluation.config import EvaluateConfig
from swirl.executors import EngineFor, ExecutorConfig, Runner, ShardOutput, in_shards, run_shards
from swirl.judging import outcome as rules
from swirl.judging.config import JudgeConfig, OutcomeJudgeConfig
from swirl.judging.process import Question, ask_all, outcome_ask
from swirl.rollout import RolloutSettings, Tool, Trajectory
from swirl.stages.base import Context, Plan
from swirl.stages.common import policy_plan, tools_for
from swirl.store import StageRef, Store
from swirl.tables import to_table
from swirl.tools.config import SearchConfig

if TYPE_CHECKING:
    from swirl.evaluation.report import Cell

TABLE = "eval_results"
REPORT_STAGE = "eval_report"
SAMPLE_MARKDOWN = 8  # episodes in the output's samples.md


@dataclass(frozen=True)
class EvalPolicy:
    """A policy to evaluate: a label for tables and metrics, the engine config (model + adapter), its
    training."""

    label: str
    engine: EngineConfig
    trained_on: str = ""


def _settings(cfg: EvaluateConfig, gen: GenerateConfig, kind: str, policy: EngineConfig) -> RolloutSettings:
    """The generate protocol's settings (step limits) with the evaluation's decoding."""
    return replace(
        rollout_settings(gen, kind, policy.max_model_len),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens_per_step=cfg.max_tokens_per_step or gen.max_tokens_per_step,
        seed=cfg.seed,
        tool_workers=cfg.tool_workers,
    )


def _judge_identity(judge: JudgeConfig) -> dict[str, Any]:
    """What shapes the LLM verdicts: the judge model, the outcome prompts, decoding and re-asks."""
    keep = ("reask_template", "max_reasks", "max_tokens", "temperature", "seed")
    return {
        "engine": engine_identity(judge.engine),
        "outcome": judge.outcome.model_dump(mode="json"),
        **{k: getattr(judge, k) for k in keep},
    }


def sampled_questions(store: Store, questions: StageRef, cfg: EvaluateConfig) -> list[dict[str, Any]]:
    """The seeded sample of questions evaluated (the same for every policy, so comparisons are paired)."""
    rows = store.read_ref(questions).select(["question_id", "dataset", "question", "answers"]).to_pylist()
    return sample_rows(rows, cfg.questions, cfg.seed)


@dataclass(frozen=True)
class Evaluate:
    """One policy on the seeded sample of one dataset's questions: episodes under the generate protocol, rule
    (and judge) verdicts; sharded by question, resumable. Engines: role `policy`, and `judge` when
    `cfg.llm_judge`, asked for only when work is left."""

    cfg: EvaluateConfig
    gen: GenerateConfig
    policy: EvalPolicy
    spec: DatasetSpec
    questions: StageRef
    corpus: StageRef | None = None
    search: SearchConfig = SearchConfig()
    judge: JudgeConfig | None = None
    executor: ExecutorConfig = ExecutorConfig()  # where shards run; not part of the version
    stage: ClassVar[str] = "evaluate"

    @property
    def label(self) -> str:
        return f"evaluate-{self.spec.name}-{self.policy.label}"

    @property
    def outcome(self) -> OutcomeJudgeConfig:
        return self.judge.outcome if self.judge else OutcomeJudgeConfig()

    def plan(self) -> Plan:
        cfg, gen, kind = self.cfg, self.gen, tool_kind(self.spec)
        s = _settings(cfg, gen, kind, self.policy.engine)
        config: dict[str, Any] = {
            "sample": {"questions": cfg.questions, "seed": cfg.seed},
            "decoding": {
                "temperature": s.temperature,
                "top_p": s.top_p,
                "max_tokens_per_step": s.max_tokens_per_step,
            },
            "protocol": {
                "task": kind,
                "template": protocol_template(gen, kind),
                "examples": protocol_examples(gen, kind),
                "max_steps": s.max_steps,
            },
            "rules": {"qa_rule": self.outcome.qa_rule, "f1_threshold": self.outcome.f1_threshold},
        }
        if cfg.ranker:  # absent for greedy: greedy evaluations keep their versions
            config["decoding"]["beam"] = {
                "width": cfg.beam_width,
                "ranker": cfg.ranker,
                "search": SEARCH_VERSION,
            }
            if cfg.ranker == "value":  # the controls use no value model
                config["decoding"]["beam"]["value_model"] = model_fingerprint(cfg.value_model, None)
        if cfg.llm_judge:
            if self.judge is None or self.judge.engine is None:
                raise ValueError(
                    "evaluate.llm_judge needs a judge engine: set judge.engine, or a policy to judge with"
                )
            config["llm_judge"] = _judge_identity(self.judge)
        return policy_plan(
            self.stage, TABLE, config, self.policy.engine, self.spec, self.questions, self.corpus, self.search
        )

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg, policy, spec = self.cfg, self.policy.engine, self.spec
        writer = plan.writer(store)
        sample = sampled_questions(store, self.questions, cfg)
        done = writer.done_keys()
        todo = [q for q in sample if q["question_id"] not in done]
        stats = {"done": len(done), "total": len(sample), "seconds": 0.0, "resumed_questions": len(done)}
        if done and todo:  # a crashed run's shards are kept: say so before the rest is evaluated
            ctx.report(**stats, resuming=True)
        shards = in_shards(todo, cfg.shard_questions)
        t0 = time.perf_counter()
        outputs = run_shards(self.executor, self, store, shards, ctx.engine, ctx.tools)
        for shard, out in zip(shards, outputs, strict=True):
            writer.write_shard(out.table, [q["question_id"] for q in shard])
            stats["done"] += len(shard)
            stats["seconds"] = time.perf_counter() - t0
            ctx.report(**stats)
        rows = writer.read_shards().to_pylist()
        summary = {
            **summarize(rows),
            "resumed_questions": stats["resumed_questions"],
            "dataset": spec.name,
            "decoding": cfg.decoding_label,
            "model": policy.model,
            "adapter": policy.adapter or "",
        }

        def files(folder: str) -> None:
            from swirl.viewer import to_markdown

            shown = rows[:SAMPLE_MARKDOWN]
            title = f"{spec.name}: {len(shown)} of {len(rows)} evaluation episodes"
            with open(os.path.join(folder, "samples.md"), "w", encoding="utf-8") as f:
                f.write(to_markdown(shown, title=title))
            with open(os.path.join(folder, "sampled_question_ids.json"), "w", encoding="utf-8") as f:
                json.dump([q["question_id"] for q in sample], f)

        return writer.finalize(summary, files=files)

    def engine_specs(self) -> list[EngineSpec]:
        judge = self.judge.engine if self.cfg.llm_judge and self.judge else None
        return [self.policy.engine] + ([judge] if judge is not None else [])

    def shard_runner(self, store: Store, engine: EngineFor, tools: Mapping[str, Tool] | None) -> Runner:
        """Loads the engines (policy, judge), the tools and the ranker once; the runner evaluates one shard
        of questions as a table of `eval_results` rows."""
        cfg, gen, policy, kind = self.cfg, self.gen, self.policy.engine, tool_kind(self.spec)
        eng = engine("policy", policy)
        jeng = engine("judge", self.judge.engine) if cfg.llm_judge and self.judge else None
        tools = tools or tools_for(self.spec, store, self.corpus, self.search)
        settings = _settings(cfg, gen, kind, policy)
        ranker = self.ranker(policy) if cfg.ranker else None

        def run(shard: list[dict[str, Any]]) -> ShardOutput:
            if ranker is None:
                trajs = run_episodes(eng, shard, gen, kind, 1, tools, settings, policy.adapter)
            else:
                starts = start_episodes(eng.tokenizer, shard, gen, kind, 1, settings)
                trajs = beam_search(eng, starts, tools, settings, ranker, cfg.beam_width, policy.adapter)
            rows = [
                score_episode(t, q, kind == "math", self.outcome, policy, cfg.decoding_label)
                for t, q in zip(trajs, shard, strict=True)
            ]
            if jeng is not None and self.judge is not None:
                judge_rows(rows, shard, kind == "math", self.judge, jeng)
            return ShardOutput(to_table(TABLE, rows), sum(t.generated_tokens for t in trajs))

        return run

    def ranker(self, policy: EngineConfig) -> Ranker:
        """How the beam search ranks candidates: the value model (beam), the policy's cumulative log-prob
        (best_of_logprob) or a random number seeded by evaluate.seed (beam_random)."""
        if self.cfg.ranker == "logprob":
            return logprob_ranker()
        if self.cfg.ranker == "random":
            return random_ranker(self.cfg.seed)
        return value_ranker(self.scorer(policy))

    def scorer(self, policy: EngineConfig) -> Scorer:
        """The value model of beam decoding: the policy's base model + the value adapter and head."""
        from swirl.models.value import ValueScorer

        return ValueScorer(policy.model, self.cfg.value_model)

    def describe(self, ref: StageRef) -> str:
        s = ref.summary
        return (
            f"accuracy {s['accuracy_rule']:.3f} [{s['accuracy_rule_low']:.3f}, "
            f"{s['accuracy_rule_high']:.3f}] on {s['questions']} questions"
        )


def score_episode(
    t: Trajectory,
    q: Mapping[str, Any],
    math: bool,
    outcome: OutcomeJudgeConfig,
    policy: EngineConfig,
    decoding: str,
) -> dict[str, Any]:
    """An eval_results row: the episode and its rule verdicts (the LLM verdict is filled in by
    `judge_rows`)."""
    answers = list(q["answers"] or ())
    prediction = t.final_answer if t.stop_reason == "answer" else ""
    kinds = [a.kind for a in t.actions]
    em = f1 = contains = None
    if not math:
        em = float(rules.exact_match(prediction, answers))
        f1 = rules.token_f1(prediction, answers)
        contains = rules.contains_answer(prediction, answers)
    return {
        "question_id": q["question_id"],
        "dataset": q["dataset"],
        "model": policy.model,
        "adapter": policy.adapter or "",
        "decoding": decoding,
        "trajectory_id": t.trajectory_id,
        "messages": t.messages,
        "prediction": prediction,
        "stop_reason": t.stop_reason,
        "num_actions": len(kinds),
        "tool_calls": sum(k in ("search", "math") for k in kinds),
        "invalid_actions": kinds.count("invalid"),
        "em": em,
        "f1": f1,
        "contains": contains,
        "rule_correct": rules.rule_outcome(prediction, answers, math, outcome.qa_rule, outcome.f1_threshold),
        "judge_correct": None,
        "judge_text": "",
    }


def judge_rows(
    rows: list[dict[str, Any]],
    questions: Sequence[Mapping[str, Any]],
    math: bool,
    judge: JudgeConfig,
    engine: Engine,
) -> None:
    """The paper's YES/NO grading of every answered episode (in one batch); no answer is never correct."""
    asks = []
    for row, q in zip(rows, questions, strict=False):
        question = Question(q["dataset"], q["question"], tuple(q["answers"] or ()))
        ask = outcome_ask({"final_answer": row["prediction"]}, question, math, judge)
        asks.append(ask)
    ask_all(engine, [a for a in asks if a is not None], judge)
    for row, ask in zip(rows, asks, strict=False):
        if ask is None:
            row["judge_correct"], row["judge_text"] = False, ""
        else:
            row["judge_correct"] = None if ask.verdict is None else ask.verdict == "YES"
            row["judge_text"] = ask.text


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy by rule (and judge) with 95% Wilson intervals, QA scores, and how episodes went."""
    from swirl.evaluation.metrics import episode_stats, proportion

    out: dict[str, Any] = {"questions": len(rows)}
    rule = proportion(bool(r["rule_correct"]) for r in rows)
    out.update(accuracy_rule=rule.rate, accuracy_rule_low=rule.low, accuracy_rule_high=rule.high)
    judged = [r for r in rows if r["judge_text"] or r["judge_correct"] is not None]
    if judged:
        jp = proportion(bool(r["judge_correct"]) for r in rows)  # no verdict counts as not correct
        out.update(
            accuracy_judge=jp.rate,
            accuracy_judge_low=jp.low,
            accuracy_judge_high=jp.high,
            judge_no_verdict=sum(r["judge_correct"] is None for r in rows),
        )
    qa = [r for r in rows if r["em"] is not None]
    if qa:
        out.update(
            em=sum(r["em"] for r in qa) / len(qa),
            f1=sum(r["f1"] for r in qa) / len(qa),
            contains=sum(bool(r["contains"]) for r in qa) / len(qa),
        )
    out.update(episode_stats(rows))
    return out


# -------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ReportEntry:
    """One evaluated (policy, dataset): the policy's label and training, and its evaluate output."""

    policy: str
    trained_on: str
    ref: StageRef


@dataclass(frozen=True)
class Report:
    """The round's evaluation report: accuracy ± interval per (policy, dataset), paired gains vs `base` on the
    same questions, the cross-task heatmap; as `report.md`, `report.json` and `heatmap.png`."""

    entries: tuple[ReportEntry, ...]
    cfg: EvaluateConfig
    title: str
    stage: ClassVar[str] = REPORT_STAGE

    @property
    def label(self) -> str:
        return "eval-report"

    def plan(self) -> Plan:
        if not self.entries:
            raise ValueError("eval report: no evaluation outputs to report on")
        config = {
            "policies": sorted({(e.policy, e.trained_on) for e in self.entries}),
            "title": self.title,
            "bootstrap_resamples": self.cfg.bootstrap_resamples,
            "seed": self.cfg.seed,
        }
        inputs = {f"{e.ref.summary.get('dataset', '?')}/{e.policy}": e.ref.short() for e in self.entries}
        return Plan(self.stage, None, config, inputs)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        from swirl.evaluation.report import heatmap_png, markdown_report

        cells = report_cells(store, self.entries, self.cfg)

        def produce(folder: str) -> None:
            with open(os.path.join(folder, "report.md"), "w", encoding="utf-8") as f:
                f.write(markdown_report(cells, self.title))
            with open(os.path.join(folder, "report.json"), "w", encoding="utf-8") as f:
                json.dump([{**asdict(c), "metric": c.metric} for c in cells], f, indent=2)
            heatmap_png(cells, os.path.join(folder, "heatmap.png"), self.title)

        summary: dict[str, Any] = {}
        for c in cells:
            m = {"accuracy": c.primary.rate}
            if c.vs_base is not None:
                v = c.vs_base
                m.update(
                    gain_vs_base=v.diff, gain_low=v.diff_low, gain_high=v.diff_high, mcnemar_p=v.mcnemar_p
                )
                if v.relative_gain is not None:
                    m["relative_gain_vs_base"] = v.relative_gain
            summary.setdefault(c.dataset, {})[c.policy] = m
        return plan.write(store, None, summary, files=produce)

    def describe(self, ref: StageRef) -> str:
        return f"{ref.path}/files/report.md"


def report_cells(
    store: Store,
    entries: Sequence[ReportEntry],
    cfg: EvaluateConfig,
    baseline: str = "base",
    question_ids: Mapping[str, Collection[str]] | None = None,
) -> list[Cell]:
    """One report cell per entry; policies other than `baseline` are compared with it on the same
    questions. `question_ids` (dataset -> ids): every entry's rows of that dataset restricted to those
    questions (to compare policies on a subset one of them was evaluated on)."""
    from swirl.evaluation.metrics import episode_stats, paired_comparison, proportion
    from swirl.evaluation.report import Cell

    cols = [
        "question_id",
        "dataset",
        "rule_correct",
        "judge_correct",
        "judge_text",
        "num_actions",
        "tool_calls",
        "invalid_actions",
        "stop_reason",
    ]
    tables = {(e.policy, e.ref.short()): store.read_ref(e.ref).select(cols).to_pylist() for e in entries}
    by_dataset: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for e in entries:
        rows = tables[(e.policy, e.ref.short())]
        keep = (question_ids or {}).get(str(e.ref.summary.get("dataset")))
        if keep is not None:
            keep = set(keep)
            rows = [r for r in rows if r["question_id"] in keep]
        by_dataset.setdefault(str(e.ref.summary.get("dataset")), {})[e.policy] = rows
    cells = []
    for e in entries:
        dataset = str(e.ref.summary.get("dataset"))
        rows = by_dataset[dataset][e.policy]
        judged = any(r["judge_text"] or r["judge_correct"] is not None for r in rows)
        verdict = (lambda r: bool(r["judge_correct"])) if judged else (lambda r: bool(r["rule_correct"]))
        base = by_dataset[dataset].get(baseline)
        vs_base = None
        if base is not None and e.policy != baseline:
            a, b = _aligned(base, rows, dataset, e.policy)
            vs_base = paired_comparison(
                [verdict(r) for r in a],
                [verdict(r) for r in b],
                resamples=cfg.bootstrap_resamples,
                seed=cfg.seed,
            )
        cells.append(
            Cell(
                policy=e.policy,
                trained_on=e.trained_on,
                dataset=dataset,
                rule=proportion(bool(r["rule_correct"]) for r in rows),
                judge=proportion(bool(r["judge_correct"]) for r in rows) if judged else None,
                vs_base=vs_base,
                episode=episode_stats(rows),
            )
        )
    return cells


def _aligned(base: list[dict], other: list[dict], dataset: str, policy: str) -> tuple[list[dict], list[dict]]:
    """Both policies' rows in the same question order; the question sets must be equal (a paired
    comparison)."""
    a = {r["question_id"]: r for r in base}
    b = {r["question_id"]: r for r in other}
    if set(a) != set(b):
        raise ValueError(
            f"eval report: {policy!r} and 'base' were evaluated on different questions of {dataset!r} "
            f"({len(set(a) ^ set(b))} differ); evaluate both with the same evaluate.questions and "
            "evaluate.seed"
        )
    ids = sorted(a)
    return [a[i] for i in ids], [b[i] for i in ids]
