"""What the flows return: frozen records of a round's stage outputs, its evaluation and an iteration's rounds.

A Prefect flow may return them (module-level dataclasses pickle). `as_dict()` gives the JSON shape logged to
MLflow (`round_summary.json`) and committed to the store (an iteration's `round.json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Fields every stage output has; the others belong to one stage and `as_dict` leaves them out when unset.
_STAGE_FIELDS = ("version", "rows", "cached", "path", "seconds", "mlflow_run_id")


@dataclass(frozen=True)
class EvalScore:
    """One evaluated (policy, dataset): rule-graded accuracy with its 95% Wilson interval, the LLM judge's
    accuracy (None without a judge), the number of questions."""

    accuracy_rule: float
    accuracy_rule_low: float
    accuracy_rule_high: float
    accuracy_judge: float | None
    questions: int

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> EvalScore:
        """From an evaluate output's summary."""
        return cls(**{f.name: summary.get(f.name) for f in fields(cls)})


def policy_accuracy(results: Mapping[str, EvalScore], policy: str) -> dict[str, float]:
    """dataset -> rule-graded accuracy of `policy`, from results keyed `<policy>@<dataset>`."""
    return {k.split("@", 1)[1]: r.accuracy_rule for k, r in results.items() if k.startswith(policy + "@")}


def mean(values: Mapping[str, float]) -> float | None:
    return sum(values.values()) / len(values) if values else None


@dataclass(frozen=True)
class StageOutput:
    """One stage output of a round: its store version, rows and folder, whether it was a store hit, the
    seconds it took and its nested MLflow run; plus what one stage adds (filter: `kept_steps`; train:
    `adapter`, `value`, `reward_mean`, `model_version`; the evaluation report: `report`, `results`)."""

    version: str
    rows: int
    cached: bool
    path: str
    seconds: float
    mlflow_run_id: str
    kept_steps: int | None = None
    adapter: str | None = None
    value: str | None = None  # objective oreo: the value model of beam decoding
    reward_mean: float | None = None
    model_version: str | None = None  # the adapter's version in the MLflow model registry
    report: str | None = None  # the report's Markdown file
    results: Mapping[str, EvalScore] | None = None  # `<policy>@<dataset>` -> its score

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k in _STAGE_FIELDS or v is not None}


@dataclass(frozen=True)
class RoundResult:
    """A finished round (or evaluation): where it ran and was tracked, and its stage outputs by name
    (`ingest/gsm8k`, `train`, `eval/gsm8k_test/trained`, `eval` for the report)."""

    run: str
    round: int | None
    mlflow_run_name: str
    store: str
    mlflow_run_id: str
    mlflow_experiment_id: str
    mlflow_uri: str
    mlflow_url: str
    seconds: float
    stages: Mapping[str, StageOutput]

    @property
    def results(self) -> Mapping[str, EvalScore]:
        """The evaluation's scores (none when the round did not evaluate)."""
        report = self.stages.get("eval")
        return (report.results if report else None) or {}

    def accuracy(self, policy: str) -> dict[str, float]:
        """dataset -> rule-graded accuracy of `policy` (e.g. "trained") in this round's evaluation."""
        return policy_accuracy(self.results, policy)

    def kept_steps(self) -> int:
        """Steps the filters kept, over every training dataset."""
        return sum(o.kept_steps or 0 for k, o in self.stages.items() if k.startswith("filter/"))

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stages"] = {k: o.as_dict() for k, o in self.stages.items()}
        return out


@dataclass(frozen=True)
class RoundRecord:
    """A finished round of an iteration: what the next round starts from and what the rounds table shows.
    `accuracy_before`: the policy the round started from, on the same questions."""

    round: int
    adapter_in: str
    adapter: str
    train_version: str
    model_version: str | None
    accuracy: dict[str, float]
    accuracy_before: dict[str, float]
    mean_accuracy: float | None
    mean_accuracy_before: float | None
    gain: float | None
    kept_steps: int
    reward_mean: float | None
    mlflow_run_id: str
    mlflow_run_name: str

    @classmethod
    def of_round(cls, result: RoundResult, adapter_in: str | None, base_label: str) -> RoundRecord:
        """The record of round `result.round`, which started from `adapter_in`, labelled `base_label`."""
        train = result.stages["train"]
        trained, before = result.accuracy("trained"), result.accuracy(base_label)
        now, then = mean(trained), mean(before)
        return cls(
            round=result.round or 0,
            adapter_in=adapter_in or "",
            adapter=train.adapter or "",
            train_version=train.version,
            model_version=train.model_version,
            accuracy=trained,
            accuracy_before=before,
            mean_accuracy=now,
            mean_accuracy_before=then,
            gain=None if now is None or then is None else now - then,
            kept_steps=result.kept_steps(),
            reward_mean=train.reward_mean,
            mlflow_run_id=result.mlflow_run_id,
            mlflow_run_name=result.mlflow_run_name,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        """From its JSON shape (an `iteration` output's summary)."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IterationResult:
    """An iteration: its MLflow run, every round of the chain (earlier runs' included) and why it stopped
    early (None: it ran the rounds it was asked for)."""

    run: str
    mlflow_run_id: str
    mlflow_run_name: str
    mlflow_url: str
    rounds: tuple[RoundRecord, ...]
    stopped: str | None
    store: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
