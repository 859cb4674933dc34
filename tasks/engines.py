"""One engine per engine config for the whole flow run (vLLM start-up costs tens of seconds).

Adapters are per request, so they are not part of the key: the policy with and without its adapter shares one
engine. An engine with `merge_adapter` serves its one adapter, so the adapter is part of its key; only one
such engine is kept at a time (each holds a copy of the weights and its own KV cache). `close_engines()` runs
at the end of a flow.

An OpenAI-compatible endpoint whose config names a Prefect Secret block (`api_key_secret`) gets its key from
that block, read on the engine's first request: the flow layer resolves Prefect secrets, the library never
imports Prefect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

from swirl.engines import Engine, EngineConfig, EngineSpec, make_engine

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def prefect_secret(name: str) -> Callable[[], str]:
    """A key provider that loads the Prefect Secret block `name` when called."""

    def load() -> str:
        from prefect.blocks.system import Secret

        return str(Secret.load(name).get() or "")

    return load


def get_engine(cfg: EngineSpec) -> Engine:
    merged = isinstance(cfg, EngineConfig) and bool(cfg.merge_adapter and cfg.adapter)
    exclude = None if merged or not isinstance(cfg, EngineConfig) else {"adapter"}
    key = json.dumps(cfg.model_dump(mode="json", exclude=exclude), sort_keys=True)
    with _LOCK:
        if key not in _ENGINES:
            if merged:
                for k in [k for k, e in _ENGINES.items() if getattr(e, "merged_adapter", False)]:
                    _ENGINES.pop(k).close()
            secret = getattr(cfg, "api_key_secret", None)
            _ENGINES[key] = make_engine(cfg, prefect_secret(secret) if secret else None)
        return _ENGINES[key]


def close_engines() -> None:
    with _LOCK:
        for eng in _ENGINES.values():
            eng.close()
        _ENGINES.clear()
