"""Train: filtered steps (+ their trajectories' token ids) -> a LoRA adapter and the `train_log` table.

The output folder holds the per-step log as a table, and `files/adapter/` (the peft adapter, what the next
round's generate and the evaluate stage load), `files/train_log.json` and `files/train_curves.png`; with
`objective: oreo` also `files/value/` (the value adapter and head: what value-guided beam search loads).
Checkpoints live in `<stage>/<version>.work/` while training runs, so a killed run resumes from its latest
checkpoint when the stage runs again; the folder is removed once the output is committed.

Every launcher goes through `swirl.training.launchers.train_with_launcher`: `launcher: inprocess` calls
`run_training` in the calling process (sharing its engines); `subprocess` runs `python -m swirl.training
--spec <work>/spec.json` (or the same module under `launch_prefix`: torchrun, accelerate launch), which calls
it there; `ray` calls it in each of `ray_workers` Ray Train workers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from swirl.engines.config import EngineConfig, engine_identity
from swirl.judging.config import JudgeConfig
from swirl.stages.base import Context, Plan
from swirl.store import MANIFEST, StageRef, Store, is_remote, path_exists
from swirl.tables import to_table
from swirl.training.config import TrainConfig
from swirl.training.data import TrainInput
from swirl.training.launchers import train_with_launcher
from swirl.training.loop import shown_metrics
from swirl.training.metrics import last_values, log_rows, per_step
from swirl.training.objectives import VALUE_DIR, objective_for
from swirl.training.run import TrainSpec, check_reward_model

STAGE = "train"
TABLE = "train_log"


def effective_config(cfg: TrainConfig, policy: EngineConfig) -> TrainConfig:
    """A policy that already carries an adapter (a previous round's) is trained further from it."""
    if cfg.lora.init_adapter is None and policy.adapter:
        return cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"init_adapter": policy.adapter})})
    return cfg


def work_dir(store: Store, version: str) -> str:
    """Local folder of checkpoints while training (beside the output for local stores)."""
    if store.local:
        return store.path(STAGE, version) + ".work"
    return os.path.join(tempfile.gettempdir(), "swirl-train", version)


@dataclass(frozen=True)
class Train:
    """LoRA training on the filtered steps (sft / swirl_offline / swirl / oreo): commits the adapter (and
    oreo's value model) and the per-step log; resumes from its latest checkpoint after a crash. The `swirl`
    objective samples from the policy (role `sampler`) and scores with the judge (role `reward`; none for
    the rule judge). `ctx.progress` receives each step's metrics, and in `show` the names of its headline ones
    (swirl/training/metrics.py)."""

    cfg: TrainConfig
    policy: EngineConfig
    inputs: tuple[TrainInput, ...]
    judge: JudgeConfig | None = None
    stage: ClassVar[str] = STAGE

    @property
    def label(self) -> str:
        return "train"

    def plan(self) -> Plan:
        if not self.inputs:
            raise ValueError(
                "train: no inputs; it trains on the filter stage's steps (add generate..filter to the stages)"
            )
        cfg = effective_config(self.cfg, self.policy)
        config: dict[str, Any] = {"train": cfg.version_config(), "policy": engine_identity(self.policy)}
        if objective_for(cfg).samples:
            check_reward_model(cfg, self.judge)
            config["reward_model"] = self.judge.version_config()
        keys = ("trajectories", "steps", "questions")
        inputs = {k: ",".join(sorted(getattr(i, k).short() for i in self.inputs)) for k in keys}
        return Plan(STAGE, TABLE, config, inputs)

    def compute(self, store: Store, plan: Plan, ctx: Context) -> StageRef:
        cfg = effective_config(self.cfg, self.policy)
        work = work_dir(store, plan.version)
        os.makedirs(work, exist_ok=True)
        t0 = time.perf_counter()
        spec = TrainSpec.of(store, cfg, self.policy, self.inputs, self.judge, work)
        shown = shown_metrics(objective_for(cfg))

        def on_step(m: dict[str, Any]) -> None:  # a step's metrics, the progress fields, what to show
            ctx.report(**m, done=m["step"], total=cfg.max_steps, show=shown.headline)

        log, data_summary = train_with_launcher(spec, ctx.engine, on_step)
        summary = {
            **data_summary,
            "steps": len(log),
            "objective": cfg.objective,
            "seconds": round(time.perf_counter() - t0, 2),
            **{f"final_{k}": v for k, v in last_values(log, shown.headline).items()},
        }
        if objective_for(cfg).samples:  # states skipped because they leave the sampler no room to generate
            summary["states_too_long"] = int(sum(r.get("states_too_long", 0) for r in log))
        writer = plan.writer(store)
        if not writer.done_keys():
            writer.write_shard(to_table(TABLE, log_rows(log, shown)), ["log"])

        def files(folder: str) -> None:
            shutil.copytree(os.path.join(work, "adapter"), os.path.join(folder, "adapter"))
            if os.path.isdir(os.path.join(work, VALUE_DIR)):
                shutil.copytree(os.path.join(work, VALUE_DIR), os.path.join(folder, VALUE_DIR))
            with open(os.path.join(folder, "train_log.json"), "w") as f:
                json.dump(log, f, indent=1)
            plot_curves(log, shown.headline, os.path.join(folder, "train_curves.png"))

        ref = writer.finalize(summary, files)
        shutil.rmtree(work, ignore_errors=True)
        return ref

    def describe(self, ref: StageRef) -> str:
        return f"{ref.summary.get('steps')} steps, adapter {adapter_path(ref)}"


def adapter_path(ref: StageRef) -> str:
    """The trained adapter folder of a train output (what generate and evaluate load)."""
    return f"{ref.path}/files/adapter"


def value_path(ref: StageRef) -> str:
    """The value model folder of a train output with objective oreo (what evaluate.value_model names)."""
    return f"{ref.path}/files/{VALUE_DIR}"


def trained_on(adapter: str) -> str:
    """The datasets an adapter from a train output was trained on ("gsm8k+hotpotqa"), read from its manifests;
    "" for an adapter that is not a swirl train output (in a local or a remote store)."""
    adapter = adapter.rstrip("/") if is_remote(adapter) else os.path.abspath(adapter)
    folder = os.path.dirname(os.path.dirname(adapter))  # <root>/train/<version>
    root, version = os.path.dirname(os.path.dirname(folder)), os.path.basename(folder)
    if os.path.basename(os.path.dirname(folder)) != STAGE or not path_exists(f"{folder}/{MANIFEST}"):
        return ""
    store = Store(root)
    questions = (store.manifest(STAGE, version) or {}).get("inputs", {}).get("questions", "")
    names = set()
    for short in filter(None, questions.split(",")):
        stage, v = short.split("/", 1)
        names.add(str(((store.manifest(stage, v) or {}).get("summary") or {}).get("dataset", "?")))
    return "+".join(sorted(names))


def read_train_log(store: Store, ref: StageRef) -> list[dict[str, Any]]:
    """The per-step log of a train output: one dict per step, {"step": 1, "loss": ..., ...} (the metrics the
    step reported, as floats)."""
    from swirl.table_io import read_columns

    return per_step(read_columns(store, [ref], ["step", "name", "value"]).to_pylist())


def plot_curves(log: Sequence[dict[str, Any]], names: Sequence[str], path: str) -> None:
    """The metrics `names` per step (those the log has), four to a row, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in names if any(r.get(k) is not None for r in log)]
    cols = max(1, min(4, len(keys)))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        pts = [(r["step"], r[k]) for r in log if r.get(k) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(k)
        ax.set_xlabel("step")
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
