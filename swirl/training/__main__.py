"""`python -m swirl.training --spec <work>/spec.json`: the trainer as a process (the train stage's
`launcher: subprocess`, and the entry for torchrun / accelerate launch).

It reads the `TrainSpec` and calls `run_training`, as the in-process launcher does. Each step's metrics are
appended to `<out>/steps.jsonl` (the parent forwards them to its tracker); at the end the whole log and the
data summary go to `<out>/result.json`. Under torchrun only rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import os


def main(argv: list[str] | None = None) -> int:
    from swirl.training.run import TrainSpec, run_training

    ap = argparse.ArgumentParser(prog="python -m swirl.training", description=__doc__)
    ap.add_argument("--spec", required=True, help="JSON spec written by the train stage")
    args = ap.parse_args(argv)
    with open(args.spec) as f:
        spec = TrainSpec.model_validate_json(f.read())
    out = spec.out_dir
    rank = int(os.environ.get("RANK", "0"))

    def on_step(m: dict) -> None:
        with open(os.path.join(out, "steps.jsonl"), "a") as f:
            f.write(json.dumps(m) + "\n")

    log, data_summary = run_training(spec, on_step=on_step)
    if rank == 0:
        tmp = os.path.join(out, "result.json.tmp")
        with open(tmp, "w") as f:
            json.dump({"log": log, "data_summary": data_summary}, f)
        os.replace(tmp, os.path.join(out, "result.json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
