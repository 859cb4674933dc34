"""One engine pool for the whole flow run (vLLM start-up costs tens of seconds): `swirl.engines.EnginePool`,
whose key rule (`swirl.engines.pool_key`) shares one engine between a policy with and without its adapter and
keeps at most one merged-adapter engine. `close_engines()` runs at the end of a flow.

An OpenAI-compatible endpoint whose config names a Prefect Secret block (`api_key_secret`) gets its key from
that block, read on the engine's first request: the flow layer resolves Prefect secrets, the library never
imports Prefect.
"""

from __future__ import annotations

from swirl.engines import Engine, EnginePool, EngineSpec


def read_prefect_secret(name: str) -> str:
    """The value of the Prefect Secret block `name`."""
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get() or "")


_POOL = EnginePool(read_secret=read_prefect_secret)


def get_engine(cfg: EngineSpec) -> Engine:
    """The flow run's engine for `cfg` (built on first use)."""
    return _POOL.get(cfg)


def close_engines() -> None:
    """Close every engine of the flow run."""
    _POOL.close()
