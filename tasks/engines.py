"""One engine per engine config for the whole flow run (vLLM start-up costs tens of seconds).

Adapters are per request, so they are not part of the key: the policy with and without its adapter shares one
engine. An engine with `merge_adapter` serves its one adapter, so the adapter is part of its key; only one
such engine is kept at a time (each holds a copy of the weights and its own KV cache). `close_engines()` runs
at the end of a flow.
"""

from __future__ import annotations

import json
import threading

from swirl.config import EngineConfig
from swirl.engines import Engine, make_engine

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def get_engine(cfg: EngineConfig) -> Engine:
    merged = bool(cfg.merge_adapter and cfg.adapter)
    key = json.dumps(cfg.model_dump(mode="json", exclude=None if merged else {"adapter"}), sort_keys=True)
    with _LOCK:
        if key not in _ENGINES:
            if merged:
                for k in [k for k, e in _ENGINES.items() if getattr(e, "merged_adapter", False)]:
                    _ENGINES.pop(k).close()
            _ENGINES[key] = make_engine(cfg)
        return _ENGINES[key]


def close_engines() -> None:
    with _LOCK:
        for eng in _ENGINES.values():
            eng.close()
        _ENGINES.clear()
