"""What the stages that run a policy through the protocol on a dataset's questions (generate, evaluate)
share: their plan (`policy_plan`) and the tool the dataset's episodes offer (`tools_for`)."""

from __future__ import annotations

from typing import Any

from swirl.data.config import DatasetSpec
from swirl.engines.config import EngineConfig, model_fingerprint, serving_identity
from swirl.episodes import tool_kind
from swirl.rollout import Tool
from swirl.stages.base import Plan
from swirl.store import StageRef, Store
from swirl.tools.config import SearchConfig


def tools_for(
    spec: DatasetSpec, store: Store, corpus: StageRef | None, search: SearchConfig
) -> dict[str, Tool]:
    """The tool a dataset's episodes offer: the calculator for math, search over its corpus index
    otherwise."""
    if tool_kind(spec) == "math":
        from swirl.tools.calculator import calculate

        return {"math": calculate}
    if corpus is None:
        raise ValueError(
            f"dataset {spec.name!r} is a search task: it needs the corpus stage's index (add 'corpus' "
            "to stages)"
        )
    from swirl.stages.corpus import open_retriever
    from swirl.tools.search import search_observation

    retriever = open_retriever(store, corpus, search)
    return {"search": lambda query: search_observation(retriever, query, search)}


def policy_plan(
    stage: str,
    table: str,
    config: dict[str, Any],
    policy: EngineConfig,
    spec: DatasetSpec,
    questions: StageRef,
    corpus: StageRef | None,
    search: SearchConfig,
) -> Plan:
    """The plan of a stage that runs a policy through the protocol on a dataset's questions (generate,
    evaluate): the policy's weights and serving, the context limit, and for search tasks the index and how
    results are shown, which shape the observations."""
    inputs = {"questions": questions.version, "policy": model_fingerprint(policy.model, policy.adapter)}
    config = {**config, "max_context": policy.max_model_len, "engine": serving_identity(policy)}
    if tool_kind(spec) == "search":
        if corpus is None:
            raise ValueError(
                f"{stage}: dataset {spec.name!r} is a search task; it needs its corpus stage output"
            )
        inputs["corpus"] = corpus.version
        config["search"] = search.model_dump(mode="json")
    return Plan(stage, table, config, inputs)
