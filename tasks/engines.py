"""One engine per engine config for the whole flow run (vLLM start-up costs tens of seconds).

Adapters are per request, so they are not part of the key: the policy with and without its adapter shares one
engine. `close_engines()` runs at the end of a flow.
"""

from __future__ import annotations

import json
import threading

from swirl.config import EngineConfig
from swirl.engines import Engine, make_engine

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def get_engine(cfg: EngineConfig) -> Engine:
    key = json.dumps(cfg.model_dump(mode="json", exclude={"adapter"}), sort_keys=True)
    with _LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = make_engine(cfg)
        return _ENGINES[key]


def close_engines() -> None:
    with _LOCK:
        for eng in _ENGINES.values():
            eng.close()
        _ENGINES.clear()
