"""A torchrun entry for the train.fsdp test: `python -m swirl.training --spec ...` that also writes, on each
rank, how much of every frozen base weight the rank holds once the loop has sharded the model:
`$SWIRL_TEST_SHARDS/rank-<RANK>.json` = {name: [local elements, full elements]}."""

from __future__ import annotations

import json
import os
import sys

import swirl.training.loop as loop
from swirl.training.__main__ import main

_shard = loop.shard


def recording_shard(model, groups, device):
    groups = _shard(model, groups, device)
    held = {n: [p.to_local().numel(), p.numel()] for n, p in model.named_parameters() if not p.requires_grad}
    path = os.path.join(os.environ["SWIRL_TEST_SHARDS"], f"rank-{os.environ['RANK']}.json")
    with open(path, "w") as f:
        json.dump(held, f)
    return groups


if __name__ == "__main__":
    loop.shard = recording_shard
    args = sys.argv[1:]
    raise SystemExit(main(args[args.index("--spec") :]))
