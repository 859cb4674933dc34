"""The one entry to training, used by every launcher of the train stage.

`TrainSpec` says everything a training run needs: the store, the input tables, the train/policy/judge
configs and the output folder. `run_training(spec, ...)` loads the objective's data, builds the sampler and
reward model when the objective samples (`swirl`), and trains. In-process, the train stage calls it with its
own engines; as a process (`python -m swirl.training --spec spec.json`, or under torchrun / accelerate
launch), `__main__` reads the spec and calls the same function. `launch(spec, ...)` runs that process and
forwards its per-step log; `launch_ray` (ray_launch.py) calls it in each Ray Train worker.
`launchers.train_with_launcher` picks one by `train.launcher`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from swirl.engines import Engine, EngineConfig, EnginePool, EngineSpec
from swirl.judging.config import JudgeConfig
from swirl.sections import Section
from swirl.store import Store, local_copy
from swirl.training.config import TrainConfig
from swirl.training.data import TrainInput

# role ("sampler": the policy's engine with the adapter being trained; "reward": the process judge) -> engine
EngineFor = Callable[[str, EngineSpec], Engine]


class TrainSpec(Section):
    """A training run, complete: what `python -m swirl.training --spec` reads."""

    store: str = Field(description="Store URL the input tables are read from.")
    train: TrainConfig
    policy: EngineConfig
    judge: JudgeConfig | None = None
    inputs: tuple[dict[str, str], ...] = Field(
        description="Per dataset: the trajectories, steps and questions outputs as 'stage/version'."
    )
    out_dir: str = Field(description="Local folder of checkpoints and the final adapter (`adapter/`).")

    @classmethod
    def of(
        cls, store: Store, cfg: TrainConfig, policy: EngineConfig, inputs, judge, out_dir: str
    ) -> TrainSpec:
        keys = ("trajectories", "steps", "questions")
        shorts = tuple({k: getattr(i, k).short() for k in keys} for i in inputs)
        return cls(store=store.url, train=cfg, policy=policy, judge=judge, inputs=shorts, out_dir=out_dir)

    def train_inputs(self, store: Store) -> list[TrainInput]:
        keys = ("trajectories", "steps", "questions")
        return [TrainInput(*(store.ref(*i[k].split("/")) for k in keys)) for i in self.inputs]


def run_training(
    spec: TrainSpec,
    engine_for: EngineFor | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train (or resume from the latest checkpoint in `spec.out_dir`); returns (per-step log, data summary).

    `engine_for`: the caller's engines by role; None builds them with `make_engine` and closes them at the
    end."""
    from swirl.training.loop import train
    from swirl.training.objectives import objective_for

    store = Store(spec.store)
    cfg = with_local_init_adapter(spec.train)
    objective = objective_for(cfg)
    data = objective.load(store, spec.train_inputs(store), cfg)
    data.summary["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    pool = EnginePool()
    try:
        engine = reward = None
        if objective.samples:
            own = lambda role, c: pool.get(c)  # noqa: E731
            engine, reward = sampler_and_reward(cfg, spec.policy, spec.judge, engine_for or own)
        result = train(cfg, spec.policy.model, data, spec.out_dir, engine, reward, on_step)
    finally:
        pool.close()
    return result.log, data.summary


def with_local_init_adapter(cfg: TrainConfig) -> TrainConfig:
    """`cfg` with `lora.init_adapter` as a local folder (the local copy of an adapter in a remote store):
    what peft loads as the starting adapter and as the KL / OREO reference."""
    if not cfg.lora.init_adapter:
        return cfg
    lora = cfg.lora.model_copy(update={"init_adapter": local_copy(cfg.lora.init_adapter)})
    return cfg.model_copy(update={"lora": lora})


def check_reward_model(cfg: TrainConfig, judge: JudgeConfig | None) -> None:
    """An objective that samples scores its samples with the judge: it needs one that can judge."""
    if judge is None or (judge.engine is None and judge.needs_model):
        raise ValueError(
            f"train: the {cfg.objective} objective needs a reward model: a judge config with an engine"
        )


def sampler_and_reward(
    cfg: TrainConfig, policy: EngineConfig, judge: JudgeConfig | None, engine_for: EngineFor
):
    """The policy's engine (LoRA enabled, rank large enough) and the process judge as reward model."""
    from swirl.training.rewards import JudgeReward, rule_process_reward

    check_reward_model(cfg, judge)
    if policy.kind == "vllm" and (not policy.enable_lora or policy.max_lora_rank < cfg.lora.rank):
        raise ValueError(
            f"train: the policy engine must serve the trained adapter: set policy.enable_lora: true and "
            f"policy.max_lora_rank >= train.lora.rank ({cfg.lora.rank})"
        )
    engine = engine_for("sampler", policy)
    if judge.process.kind == "rule":
        return engine, rule_process_reward(judge, cfg.swirl.label_rewards)
    return engine, JudgeReward(engine_for("reward", judge.engine), judge, cfg.swirl.label_rewards)


def launch(spec: TrainSpec, on_step: Callable[[dict[str, Any]], None] | None = None):
    """Run `python -m swirl.training --spec <out_dir>/spec.json` (under `train.launch_prefix` when set:
    torchrun, accelerate launch), forwarding its per-step log to `on_step`; returns what `run_training`
    returned."""
    work = spec.out_dir
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        f.write(spec.model_dump_json(indent=1))
    cmd = [*(spec.train.launch_prefix or [sys.executable]), "-m", "swirl.training", "--spec", spec_path]
    log_path, err_path = os.path.join(work, "steps.jsonl"), os.path.join(work, "stderr.txt")
    seen = 0
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        while True:
            code = proc.poll()
            seen = _forward(log_path, seen, on_step)
            if code is not None:
                break
            time.sleep(1.0)
    if code != 0:
        with open(err_path, "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
        raise RuntimeError(
            f"train subprocess {' '.join(cmd)} failed with exit code {code}; its output ends with:\n{tail}"
        )
    with open(os.path.join(work, "result.json")) as f:
        result = json.load(f)
    return result["log"], result["data_summary"]


def _forward(path: str, seen: int, on_step: Callable | None) -> int:
    if not os.path.exists(path):
        return seen
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines[seen:]:
        if line.strip() and on_step:
            on_step(json.loads(line))
    return len(lines)
