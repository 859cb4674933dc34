"""The store versions a config's round would give its training stages, planned without running anything:
two configs that plan the same versions produce (and share) the same outputs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from swirl.config import RunConfig
from swirl.data.config import DatasetSpec
from swirl.store import StageRef


def stand_in_questions(spec: DatasetSpec) -> StageRef:
    """A `questions` output standing in for a dataset's ingest (the same spec, the same stand-in)."""
    version = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:12]
    return StageRef("ingest", version, f"/s/ingest/{version}", "questions", 1, {"dataset": spec.name})


def training_versions(
    cfg: RunConfig, questions: Callable[[DatasetSpec], StageRef] = stand_in_questions
) -> dict[str, str]:
    """`<stage>/<dataset>` (and `train`) -> the version the round of `cfg` would write, for generate,
    judge, decompose, filter and train on each training dataset; `questions`: a dataset's ingest output."""
    from swirl.episodes import tool_kind
    from swirl.stages.corpus import Corpus
    from swirl.stages.decompose import Decompose
    from swirl.stages.filter import Filter
    from swirl.stages.generate import Generate
    from swirl.stages.judge import Judge
    from swirl.stages.train import Train
    from swirl.training.data import TrainInput

    def planned(job) -> StageRef:
        plan = job.plan()
        return StageRef(plan.stage, plan.version, f"/s/{plan.short()}", plan.table, 1)

    out: dict[str, str] = {}
    inputs = []
    for spec in cfg.generate_datasets():
        q, name = questions(spec), spec.name
        corpus = None
        if tool_kind(spec) == "search":
            corpus = planned(Corpus(questions(spec.whole_split()), cfg.search, name))
        trajs = planned(Generate(cfg.generate, cfg.policy, spec, q, corpus, cfg.search))
        judged = planned(Judge(trajs, q, cfg.judge_config(), name))
        steps = planned(Decompose(trajs, judged, q, cfg.decompose, name))
        kept = planned(Filter(steps, cfg.filter, name))
        for ref in (trajs, judged, steps, kept):
            out[f"{ref.stage}/{name}"] = ref.version
        inputs.append(TrainInput(trajs, kept, q))
    out["train"] = Train(cfg.train, cfg.policy, tuple(inputs), cfg.judge_config()).plan().version
    return out
