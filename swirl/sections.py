"""The base class of every config section: frozen (hashable, safe to share between tasks) and strict (an
unknown field is an error that names it, never silently ignored).

Each subsystem defines its own sections on this base (`engines/config.py`, `data/config.py`,
`models/config.py`, `tools/config.py`, `episodes.py`, `subtrajectories.py`, `judging/config.py`,
`training/config.py`, `evaluation/config.py`); `swirl.config` only composes them into the run config.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
