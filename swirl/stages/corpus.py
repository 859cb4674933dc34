"""Corpus: questions' context paragraphs (or a corpus file) -> the `corpus` table plus its retrieval index.

The index is saved under the same stage output (`files/index/`), so it is built once per corpus version and
every later stage (generate, evaluate) loads it with `open_retriever` instead of rebuilding it. The version
hashes the inputs (questions versions or the corpus file's checksum) and only the index-shaping search
settings (`SearchConfig.index_config()`), so changing how results are shown never rebuilds an index.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from swirl.data.corpus import corpus_from_questions, read_corpus_file
from swirl.data.loaders import DataError
from swirl.stages.base import Context, Plan
from swirl.store import StageRef, Store, file_sha256, local_copy
from swirl.tables import to_table
from swirl.tools.config import SearchConfig
from swirl.tools.search import Retriever, build_retriever, load_retriever

STAGE = "corpus"  # open_retriever checks it
TABLE = "corpus"
INDEX_DIR = "index"
BUILDER_VERSION = 1  # bump when pooling/de-duplication rules change


Source = StageRef | tuple[StageRef, ...] | str


@dataclass(frozen=True)
class Corpus:
    """Pool the articles of questions tables (or read a corpus file) and build the search index over them."""

    source: Source  # questions tables (a dataset's whole split) or a corpus file path (JSONL or Parquet)
    search: SearchConfig
    name: str = ""  # the dataset the corpus serves, for logs
    stage: ClassVar[str] = "corpus"

    @property
    def label(self) -> str:
        return f"corpus-{self.name}" if self.name else "corpus"

    def refs(self) -> list[StageRef]:
        return sorted(
            [self.source] if isinstance(self.source, StageRef) else list(self.source), key=lambda r: r.short()
        )

    def plan(self) -> Plan:
        cfg = self.search
        if isinstance(self.source, str | os.PathLike):
            path = os.fspath(self.source)
            if not os.path.exists(path):
                raise DataError(f"{path}: corpus file not found; fix the corpus path (JSONL or Parquet)")
            config = {"source": "file", "builder": BUILDER_VERSION, **cfg.index_config()}
            return Plan(self.stage, TABLE, config, {"corpus_file_sha256": file_sha256(path)})
        refs = self.refs()
        if not refs:
            raise ValueError("corpus: needs at least one questions table (or a corpus file path)")
        bad = [r.short() for r in refs if r.table != "questions"]
        if bad:
            raise ValueError(
                f"corpus: reads questions tables; got {bad}. Pass ingest outputs or a file path."
            )
        config = {"source": "questions", "builder": BUILDER_VERSION, **cfg.index_config()}
        return Plan(self.stage, TABLE, config, {"questions": ",".join(r.short() for r in refs)})

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        if isinstance(self.source, str | os.PathLike):
            rows, summary = read_corpus_file(os.fspath(self.source))
        else:
            rows, summary = corpus_from_questions(store.read_ref(r) for r in self.refs())
        t0 = time.perf_counter()
        retriever = build_retriever(rows, self.search)
        summary = {
            **summary,
            "retriever": self.search.retriever,
            "index_build_s": round(time.perf_counter() - t0, 3),
        }
        return plan.write(
            store,
            to_table(TABLE, rows),
            summary,
            files=lambda folder: retriever.save(os.path.join(folder, INDEX_DIR)),
        )

    def describe(self, ref: StageRef) -> str:
        return f"{ref.rows} articles, {self.search.retriever} index"


def open_retriever(store: Store, ref: StageRef, cfg: SearchConfig | None = None) -> Retriever:
    """The saved index of a corpus stage output, with its documents; never rebuilds.

    On a remote store (s3://, gs://) the index is read from its local copy (swirl.store.local_copy)."""
    if ref.stage != STAGE:
        raise ValueError(f"open_retriever needs a {STAGE} stage output, got {ref.short()}")
    docs = store.read_ref(ref).to_pylist()
    folder = local_copy(f"{store.files_path(ref.stage, ref.version)}/{INDEX_DIR}")
    return load_retriever(folder, docs, cfg)
