"""Ingest: a dataset in its original format -> the `questions` table."""

from __future__ import annotations

from swirl.config import DatasetSpec
from swirl.data.loaders import load_questions
from swirl.store import StageRef, Store, file_sha256, stage_version
from swirl.tables import to_table

STAGE = "ingest"
TABLE = "questions"


def _inputs(spec: DatasetSpec) -> dict[str, str]:
    """A local file's contents are an input (editing the file re-ingests); a hub dataset is named."""
    return (
        {"source_sha256": file_sha256(spec.path)} if spec.path else {"hub": f"{spec.hub}:{spec.hub_config}"}
    )


def ingest_version(spec: DatasetSpec) -> str:
    return stage_version(STAGE, spec.model_dump(mode="json"), _inputs(spec), TABLE)


def run_ingest(store: Store, spec: DatasetSpec) -> StageRef:
    inputs = _inputs(spec)
    version = stage_version(STAGE, spec.model_dump(mode="json"), inputs, TABLE)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    rows, report = load_questions(spec)
    summary = {**report.summary(), "questions": len(rows), "dataset": spec.name, "split": spec.split}
    return store.write_table(
        STAGE, version, to_table(TABLE, rows), TABLE, spec.model_dump(mode="json"), inputs, summary
    )
