"""Corpus: questions' context paragraphs (or a corpus file) -> the `corpus` table plus its retrieval index.

The index is saved under the same stage output (`files/index/`), so it is built once per corpus version and
every later stage (generate, evaluate) loads it with `open_retriever` instead of rebuilding it. The version
hashes the inputs (questions versions or the corpus file's checksum) and only the index-shaping search
settings (`SearchConfig.index_config()`), so changing how results are shown never rebuilds an index.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from swirl.data.corpus import corpus_from_questions, read_corpus_file
from swirl.store import StageRef, Store, file_sha256, stage_version
from swirl.tables import to_table
from swirl.tools.config import SearchConfig
from swirl.tools.search import Retriever, build_retriever, load_retriever

STAGE = "corpus"
TABLE = "corpus"
INDEX_DIR = "index"
BUILDER_VERSION = 1  # bump when pooling/de-duplication rules change


Source = StageRef | Sequence[StageRef] | str


def _plan(source: Source, cfg: SearchConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """(config, inputs) of the stage version for this source."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: corpus file not found; fix the corpus path (JSONL or Parquet)")
        return (
            {"source": "file", "builder": BUILDER_VERSION, **cfg.index_config()},
            {"corpus_file_sha256": file_sha256(path)},
        )
    refs = [source] if isinstance(source, StageRef) else list(source)
    if not refs:
        raise ValueError("run_corpus needs at least one questions table (or a corpus file path)")
    bad = [r.short() for r in refs if r.table != "questions"]
    if bad:
        raise ValueError(
            f"run_corpus reads questions tables; got {bad}. Pass ingest outputs or a corpus file path."
        )
    return (
        {"source": "questions", "builder": BUILDER_VERSION, **cfg.index_config()},
        {"questions": ",".join(sorted(r.short() for r in refs))},
    )


def corpus_version(source: Source, cfg: SearchConfig) -> str:
    config, inputs = _plan(source, cfg)
    return stage_version(STAGE, config, inputs, TABLE)


def run_corpus(store: Store, source: Source, cfg: SearchConfig) -> StageRef:
    """Pool (or read) the corpus, build the index, commit both; return the existing output when complete."""
    config, inputs = _plan(source, cfg)
    version = stage_version(STAGE, config, inputs, TABLE)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    if isinstance(source, str | os.PathLike):
        rows, summary = read_corpus_file(os.fspath(source))
    else:
        refs = sorted([source] if isinstance(source, StageRef) else source, key=lambda r: r.short())
        rows, summary = corpus_from_questions(store.read_ref(r) for r in refs)
    t0 = time.perf_counter()
    retriever = build_retriever(rows, cfg)
    summary = {**summary, "retriever": cfg.retriever, "index_build_s": round(time.perf_counter() - t0, 3)}
    return store.write_table(
        STAGE,
        version,
        to_table(TABLE, rows),
        TABLE,
        config,
        inputs,
        summary,
        files=lambda folder: retriever.save(os.path.join(folder, INDEX_DIR)),
    )


def open_retriever(store: Store, ref: StageRef, cfg: SearchConfig | None = None) -> Retriever:
    """The saved index of a corpus stage output, with its documents; never rebuilds.

    On a remote store (s3://, gs://) the index folder is first copied to a local temporary folder."""
    if ref.stage != STAGE:
        raise ValueError(f"open_retriever needs a {STAGE} stage output, got {ref.short()}")
    docs = store.read_ref(ref).to_pylist()
    folder = f"{store.files_path(ref.stage, ref.version)}/{INDEX_DIR}"
    if not store.local:
        local = os.path.join(tempfile.mkdtemp(prefix=f"swirl-index-{ref.version}-"), INDEX_DIR)
        store.fs.get(folder + "/", local, recursive=True)
        folder = local
    return load_retriever(folder, docs, cfg)
