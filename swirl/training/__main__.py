"""`python -m swirl.training --spec <work>/spec.json`: the trainer as a process (written by the train stage).

The spec names the store, the input tables, the train/policy/judge configs and the output folder. Each step's
metrics are appended to `<out>/steps.jsonl` (the parent forwards them to its tracker); at the end the whole
log and the data summary go to `<out>/result.json`. Under torchrun only rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import os


def main(argv: list[str] | None = None) -> int:
    from swirl.config import EngineConfig, JudgeSection
    from swirl.store import Store
    from swirl.training.config import TrainConfig
    from swirl.training.data import TrainInput, load_train_data
    from swirl.training.loop import train

    ap = argparse.ArgumentParser(prog="python -m swirl.training", description=__doc__)
    ap.add_argument("--spec", required=True, help="JSON spec written by the train stage")
    args = ap.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    store = Store(spec["store"])
    cfg = TrainConfig.model_validate(spec["train"])
    policy = EngineConfig.model_validate(spec["policy"])
    judge = JudgeSection.model_validate(spec["judge"]) if spec.get("judge") else None
    inputs = [
        TrainInput(*(store.ref(*i[k].split("/")) for k in ("trajectories", "steps", "questions")))
        for i in spec["inputs"]
    ]
    out = spec["out_dir"]
    rank = int(os.environ.get("RANK", "0"))
    data = load_train_data(store, inputs, cfg)
    data.summary["world_size"] = int(os.environ.get("WORLD_SIZE", "1"))
    engine = reward = None
    if cfg.objective == "swirl":
        from swirl.stages.train import build_sampler_and_reward

        engine, reward = build_sampler_and_reward(cfg, policy, judge)

    def on_step(m: dict) -> None:
        with open(os.path.join(out, "steps.jsonl"), "a") as f:
            f.write(json.dumps(m) + "\n")

    result = train(cfg, policy.model, data, out, engine, reward, on_step)
    if rank == 0:
        tmp = os.path.join(out, "result.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"log": result.log, "data_summary": data.summary}, f)
        os.replace(tmp, os.path.join(out, "result.json"))
    if engine is not None:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
