"""Judging: the process judge (GOOD/BAD per step), the outcome judge (rule-based and LLM), and their configs.

`make_judge_engine` builds the judge's engine from its config: a local engine (vllm/hf) or an
OpenAI-compatible endpoint. Heavy imports happen inside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swirl.engines.base import Engine


def make_judge_engine(cfg: Any) -> Engine:
    """An OpenAIEngineConfig gives the HTTP engine; a swirl.config.EngineConfig (kind vllm/hf) a local one."""
    from swirl.engines.openai import OpenAIEngine, OpenAIEngineConfig

    if isinstance(cfg, OpenAIEngineConfig):
        return OpenAIEngine.from_config(cfg)
    from swirl.engines import make_engine

    return make_engine(cfg)
