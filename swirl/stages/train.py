"""Train: filtered steps (+ their trajectories' token ids) -> a LoRA adapter and the `train_log` table.

The output folder holds the per-step log as a table, and `files/adapter/` (the peft adapter, what the next
round's generate and the evaluate stage load), `files/train_log.json` and `files/train_curves.png`.
Checkpoints live in `<stage>/<version>.work/` while training runs, so a killed run resumes from its latest
checkpoint when the stage runs again; the folder is removed once the output is committed.

`launcher: inprocess` trains in the calling process (sharing its engines); `subprocess` runs
`python -m swirl.training --spec <work>/spec.json`, or the same module under `launch_prefix` (torchrun,
accelerate launch) for multi-GPU training.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from swirl.judging.config import JudgeConfig, engine_identity
from swirl.store import StageRef, Store, stage_version
from swirl.tables import to_table
from swirl.training.config import TrainConfig
from swirl.training.data import TrainInput

STAGE = "train"
TABLE = "train_log"
LOG_COLUMNS = (
    "step",
    "loss",
    "policy_loss",
    "kl",
    "logp_mean",
    "reward_mean",
    "weight_mean",
    "logprob_drift",
    "grad_norm",
    "lr",
    "trained_tokens",
    "tokens",
    "tokens_per_s",
    "seconds",
)


def effective_config(cfg: TrainConfig, policy: Any) -> TrainConfig:
    """A policy that already carries an adapter (a previous round's) is trained further from it."""
    if cfg.lora.init_adapter is None and getattr(policy, "adapter", None):
        return cfg.model_copy(update={"lora": cfg.lora.model_copy(update={"init_adapter": policy.adapter})})
    return cfg


def _plan(
    cfg: TrainConfig, policy: Any, inputs: Sequence[TrainInput], judge: JudgeConfig | None
) -> tuple[dict, dict]:
    if not inputs:
        raise ValueError(
            "train: no inputs; it trains on the filter stage's steps (add generate..filter to the stages)"
        )
    cfg = effective_config(cfg, policy)
    config: dict[str, Any] = {"train": cfg.version_config(), "policy": engine_identity(policy)}
    if cfg.objective == "swirl":
        if judge is None or (judge.engine is None and judge.needs_model):
            raise ValueError("train: the swirl objective needs a reward model: a judge config with an engine")
        config["reward_model"] = judge.version_config(engine_identity(judge.engine))
    ins = {
        k: ",".join(sorted(getattr(i, k).short() for i in inputs))
        for k in ("trajectories", "steps", "questions")
    }
    return config, ins


def train_version(
    cfg: TrainConfig, policy: Any, inputs: Sequence[TrainInput], judge: JudgeConfig | None = None
) -> str:
    config, ins = _plan(cfg, policy, inputs, judge)
    return stage_version(STAGE, config, ins, TABLE)


def work_dir(store: Store, version: str) -> str:
    """Local folder of checkpoints while training (beside the output for local stores)."""
    if store.local:
        return store.path(STAGE, version) + ".work"
    return os.path.join(tempfile.gettempdir(), "swirl-train", version)


def run_train(
    store: Store,
    cfg: TrainConfig,
    policy: Any,
    inputs: Sequence[TrainInput],
    judge: JudgeConfig | None = None,
    sampler: Callable[[], Any] | None = None,
    judge_engine: Callable[[], Any] | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> StageRef:
    """Train (or resume training) and commit the adapter and log. `sampler`/`judge_engine` build the policy's
    and the reward model's engines (swirl objective, in-process launcher); the subprocess builds its own."""
    config, ins = _plan(cfg, policy, inputs, judge)
    version = stage_version(STAGE, config, ins, TABLE)
    if store.is_complete(STAGE, version):
        return store.ref(STAGE, version)
    cfg = effective_config(cfg, policy)
    work = work_dir(store, version)
    os.makedirs(work, exist_ok=True)
    t0 = time.perf_counter()
    if cfg.launcher == "inprocess":
        log, data_summary = _train_here(
            store, cfg, policy, inputs, judge, work, sampler, judge_engine, on_step
        )
    else:
        log, data_summary = _train_subprocess(store, cfg, policy, inputs, judge, work, on_step)
    adapter = os.path.join(work, "adapter")
    last = log[-1] if log else {}
    summary = {
        **data_summary,
        "steps": len(log),
        "objective": cfg.objective,
        "seconds": round(time.perf_counter() - t0, 2),
        **{
            f"final_{k}": last[k]
            for k in ("loss", "kl", "reward_mean", "logp_mean")
            if last.get(k) is not None
        },
    }
    if cfg.objective == "swirl":  # states skipped because they leave the sampler no room to generate
        summary["states_too_long"] = int(sum(r.get("states_too_long", 0) for r in log))
    rows = [{c: r.get(c) for c in LOG_COLUMNS} for r in log]
    writer = store.sharded(STAGE, version, TABLE, config, ins)
    if not writer.done_keys():
        writer.write_shard(to_table(TABLE, rows), ["log"])

    def files(folder: str) -> None:
        shutil.copytree(adapter, os.path.join(folder, "adapter"))
        with open(os.path.join(folder, "train_log.json"), "w") as f:
            json.dump(log, f, indent=1)
        plot_curves(log, os.path.join(folder, "train_curves.png"))

    ref = writer.finalize(summary, files)
    shutil.rmtree(work, ignore_errors=True)
    return ref


def adapter_path(ref: StageRef) -> str:
    """The trained adapter folder of a train output (what generate and evaluate load)."""
    return f"{ref.path}/files/adapter"


def trained_on(adapter: str) -> str:
    """The datasets an adapter from a train output was trained on ("gsm8k+hotpotqa"), read from its manifests;
    "" for an adapter that is not a local swirl train output."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(adapter)))  # <root>/train/<version>
    root, version = os.path.dirname(os.path.dirname(folder)), os.path.basename(folder)
    if os.path.basename(os.path.dirname(folder)) != STAGE or not os.path.exists(
        os.path.join(folder, "_manifest.json")
    ):
        return ""
    store = Store(root)
    questions = (store.manifest(STAGE, version) or {}).get("inputs", {}).get("questions", "")
    names = set()
    for short in filter(None, questions.split(",")):
        stage, v = short.split("/", 1)
        names.add(str(((store.manifest(stage, v) or {}).get("summary") or {}).get("dataset", "?")))
    return "+".join(sorted(names))


def read_train_log(store: Store, ref: StageRef) -> list[dict[str, Any]]:
    """The per-step log of a train output, as rows."""
    from swirl.steps import read_columns

    return read_columns(store, [ref], list(LOG_COLUMNS)).to_pylist()


def _train_here(store, cfg, policy, inputs, judge, work, sampler, judge_engine, on_step):
    from swirl.training.data import load_train_data
    from swirl.training.loop import train

    data = load_train_data(store, inputs, cfg)
    engine = reward = None
    if cfg.objective == "swirl":
        engine, reward = build_sampler_and_reward(cfg, policy, judge, sampler, judge_engine)
    result = train(cfg, policy.model, data, work, engine, reward, on_step)
    return result.log, data.summary


def build_sampler_and_reward(
    cfg: TrainConfig, policy: Any, judge: JudgeConfig, sampler=None, judge_engine=None
):
    """The policy's engine (LoRA enabled, rank large enough) and the process judge as reward model."""
    from swirl.judging import make_judge_engine
    from swirl.training.rewards import JudgeReward

    if getattr(policy, "kind", "vllm") == "vllm" and (
        not policy.enable_lora or policy.max_lora_rank < cfg.lora.rank
    ):
        raise ValueError(
            f"train: the policy engine must serve the trained adapter: set policy.enable_lora: true and "
            f"policy.max_lora_rank >= train.lora.rank ({cfg.lora.rank})"
        )
    engine = sampler() if sampler else make_judge_engine(policy)
    if judge.process.kind == "rule":
        from swirl.training.rewards import rule_process_reward

        return engine, rule_process_reward(judge, cfg.swirl.label_rewards)
    same = engine_identity(judge.engine) == engine_identity(policy) and not getattr(policy, "adapter", None)
    judge_eng = judge_engine() if judge_engine else (engine if same else make_judge_engine(judge.engine))
    return engine, JudgeReward(judge_eng, judge, cfg.swirl.label_rewards)


def launch_command(
    store: Store,
    cfg: TrainConfig,
    policy: Any,
    inputs: Sequence[TrainInput],
    judge: JudgeConfig | None,
    work: str,
) -> list[str]:
    """Write `<work>/spec.json` and return the command that trains on it: `python -m swirl.training --spec
    ...`, or the same module under `launch_prefix` (torchrun, accelerate launch)."""
    spec = {
        "store": store.url,
        "train": cfg.model_dump(mode="json"),
        "policy": policy.model_dump(mode="json"),
        "judge": judge.model_dump(mode="json") if judge is not None else None,
        "inputs": [
            {k: getattr(i, k).short() for k in ("trajectories", "steps", "questions")} for i in inputs
        ],
        "out_dir": work,
    }
    spec_path = os.path.join(work, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    return [*(cfg.launch_prefix or [sys.executable]), "-m", "swirl.training", "--spec", spec_path]


def _train_subprocess(store, cfg, policy, inputs, judge, work, on_step):
    """Run the subprocess trainer, forwarding its per-step log to on_step."""
    cmd = launch_command(store, cfg, policy, inputs, judge, work)
    log_path = os.path.join(work, "steps.jsonl")
    err_path = os.path.join(work, "stderr.txt")
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


def plot_curves(log: Sequence[dict[str, Any]], path: str) -> None:
    """Loss, reward/weight, KL and grad norm per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        k
        for k in ("loss", "reward_mean", "kl", "grad_norm", "logp_mean", "tokens_per_s")
        if any(r.get(k) is not None for r in log)
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        pts = [(r["step"], r[k]) for r in log if r.get(k) is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(k)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
