"""Ingest: a dataset in its original format -> the `questions` table."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from swirl.data.config import DatasetSpec
from swirl.data.loaders import DataError, load_questions
from swirl.stages.base import Context, Plan
from swirl.store import StageRef, Store, file_sha256
from swirl.tables import to_table


@dataclass(frozen=True)
class Ingest:
    """Read one dataset (a local file or a hub dataset) into a `questions` table."""

    spec: DatasetSpec
    stage: ClassVar[str] = "ingest"
    transient_errors: ClassVar[bool] = True  # a hub download or an object store may fail and succeed later

    @property
    def label(self) -> str:
        return f"ingest-{self.spec.name}"

    def plan(self) -> Plan:
        # A local file's contents are an input (editing the file re-ingests); a hub dataset is named.
        spec = self.spec
        if spec.path and "://" not in spec.path and not os.path.exists(spec.path):
            raise DataError(
                f"ingest.datasets ({spec.name}).path: file not found: {spec.path!r} (relative paths resolve "
                f"from {os.getcwd()}); fix the path, run from the project folder, or add `prepare` to the "
                "stages if the prepare stage writes it"
            )
        inputs = (
            {"source_sha256": file_sha256(spec.path)}
            if spec.path
            else {"hub": f"{spec.hub}:{spec.hub_config}"}
        )
        return Plan(self.stage, "questions", spec.model_dump(mode="json"), inputs)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        rows, report = load_questions(self.spec)
        summary = {
            **report.summary(),
            "questions": len(rows),
            "dataset": self.spec.name,
            "split": self.spec.split,
        }
        return plan.write(store, to_table("questions", rows), summary)

    def describe(self, ref: StageRef) -> str:
        s = ref.summary
        return f"{ref.rows} questions ({s.get('records')} read, {s.get('skipped')} skipped)"
