"""The MLflow model registry of a run config's adapters: one registered model per experiment, a version per
round that trains, tagged with its accuracy; the `champion` alias on the best-evaluated version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from swirl.config import RunConfig
from swirl.store import local_copy
from tasks.tracking import Tracking, mlflow_client

CHAMPION = "champion"  # the alias of the best-evaluated adapter version of an experiment's registered model


def register_adapter(
    tr: Tracking,
    run_id: str,
    adapter: str,
    base_model: str,
    registered_name: str,
    tags: Mapping[str, str],
) -> str:
    """The train output's adapter logged as an MLflow pyfunc model on the train stage's run (`model/`) and
    registered as a version of `registered_name` (one registered model per experiment); returns the version.
    An adapter already registered (a cached train stage: the same train version) is not logged again: its
    version is returned."""
    import tempfile

    import mlflow.pyfunc

    client = mlflow_client(tr.uri)
    try:
        client.get_registered_model(registered_name)
    except Exception:  # noqa: BLE001  (mlflow raises RestException / MlflowException for a missing model)
        try:
            description = "LoRA adapters of this experiment's rounds (base model + adapter)."
            client.create_registered_model(registered_name, description=description)
        except Exception:  # noqa: BLE001  another run (of the same config) created it a moment ago
            client.get_registered_model(registered_name)
    train_version = tags.get("swirl.train_version", "")
    if train_version:
        for mv in client.search_model_versions(f"name = '{registered_name}'"):
            if mv.tags.get("swirl.train_version") == train_version:
                return str(mv.version)
    code = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adapter_model.py")
    with tempfile.TemporaryDirectory(prefix="swirl-model-") as tmp:
        path = os.path.join(tmp, "model")
        mlflow.pyfunc.save_model(
            path,
            python_model=code,
            artifacts={"adapter": local_copy(adapter)},  # MLflow copies a local folder
            model_config={"base_model": base_model, "max_new_tokens": 256},
            pip_requirements=["torch", "transformers", "peft"],
        )
        client.log_artifacts(run_id, path, "model")
    what = f"round {tags['swirl.round']} of {tags['swirl.run']}" if "swirl.round" in tags else "an adapter"
    start = f", trained further from {tags['swirl.base_adapter']}" if tags.get("swirl.base_adapter") else ""
    mv = client.create_model_version(
        registered_name,
        f"runs:/{run_id}/model",
        run_id=run_id,
        tags=dict(tags),
        description=f"LoRA adapter of {what} (train output {train_version}){start}; "
        "mlflow.pyfunc.load_model(...).predict([prompt]) generates with base + adapter.",
        await_creation_for=0,
    )
    return str(mv.version)


def tag_model_version(uri: str, registered_name: str, version: str, tags: Mapping[str, str]) -> None:
    client = mlflow_client(uri)
    for k, v in tags.items():
        client.set_model_version_tag(registered_name, version, k, v)


def promote_if_better(uri: str, registered_name: str, version: str, accuracy: float) -> bool:
    """Move the `champion` alias to `version` when its accuracy (tag `swirl.accuracy`, the mean rule-graded
    accuracy over the evaluation datasets) beats the current champion's, or when there is none; True when
    moved."""
    client = mlflow_client(uri)
    try:
        current = client.get_model_version_by_alias(registered_name, CHAMPION)
    except Exception:  # noqa: BLE001  (no alias yet)
        current = None
    if current is not None:
        if str(current.version) == str(version):
            return False
        best = current.tags.get("swirl.accuracy")
        if best is not None and float(best) >= accuracy:
            return False
    client.set_registered_model_alias(registered_name, CHAMPION, str(version))
    return True


def registered_model_name(cfg: RunConfig) -> str:
    """One registered model per MLflow experiment: its adapters, a version per round that trains."""
    return cfg.run.experiment


def promote_by_accuracy(uri: str, registered_name: str, version: str, accuracy: Mapping[str, float]) -> bool:
    """Tag `version` with its rule-graded accuracy per evaluation dataset (`swirl.accuracy.<dataset>`) and
    their mean (`swirl.accuracy`), then move the champion alias to it when that mean beats the champion's;
    True when moved."""
    mean = sum(accuracy.values()) / len(accuracy)
    tags = {f"swirl.accuracy.{d}": f"{a:.6f}" for d, a in accuracy.items()}
    tag_model_version(uri, registered_name, version, {"swirl.accuracy": f"{mean:.6f}", **tags})
    return promote_if_better(uri, registered_name, version, mean)
