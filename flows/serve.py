"""`swirl serve`: every swirl deployment served from one process (a laptop's worker, no work pool needed).

The same three flows `deployments/prefect.yaml` deploys to work pools: `swirl_round` (one round),
`swirl_iterate` (rounds, each from the previous adapter; with `--every`, a schedule that adds one more round
each time) and `swirl_evaluate`, each on a base config with the Run form's typed overrides. Runs triggered
from the UI or the API execute in this process, in the project root.
"""

from __future__ import annotations

from typing import Any

from flows.evaluate import swirl_evaluate
from flows.iterate import swirl_iterate
from flows.parameters import config_name
from flows.round import swirl_round_from_file


def served_deployments(config_path: str, every_minutes: float | None = None) -> list[Any]:
    """The deployments `swirl serve` serves, named after the config file (e.g. `swirl_iterate/quickstart`)."""
    name = config_name(config_path)
    schedule: dict[str, Any] = {"interval": every_minutes * 60} if every_minutes else {}
    return [
        swirl_round_from_file.to_deployment(
            name=name,
            parameters={"config_path": config_path},
            description=f"One round of the pipeline on {config_path}; set knobs in the Run form.",
            tags=["swirl", name],
        ),
        swirl_iterate.to_deployment(
            name=name,
            parameters={"config_path": config_path, "rounds": 2}
            if not every_minutes
            else {"config_path": config_path, "more_rounds": 1},
            description=f"Rounds on {config_path}, each training the previous round's adapter further"
            + (f"; every {every_minutes:g} min one more round" if every_minutes else ""),
            tags=["swirl", name, "iterate"],
            **schedule,
        ),
        swirl_evaluate.to_deployment(
            name=name,
            parameters={"config_path": config_path},
            description=f"Evaluate the base policy and adapters on {config_path}'s evaluation datasets.",
            tags=["swirl", name, "evaluate"],
        ),
    ]


def serve_all(config_path: str, every_minutes: float | None = None) -> None:
    from prefect import serve

    serve(*served_deployments(config_path, every_minutes))
