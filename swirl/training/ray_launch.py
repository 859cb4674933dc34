"""`train.launcher: ray`: the trainer as `train.ray_workers` Ray Train workers, on any nodes of a Ray cluster.

Ray Train's `TorchTrainer` starts the workers and sets up torch.distributed among them (gloo on CPU workers,
nccl on GPU ones) with the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), so each worker runs the same
`run_training` as the other launchers and `Dist` (dist.py) splits the micro-batches and sums the gradients
as under torchrun. Rank 0 puts each step's metrics, then the log and data summary, on a Ray queue that the
caller drains into `on_step` while the workers train. Rank 0 writes the adapter and checkpoints into
`spec.out_dir`; when it runs on another node than the caller, it also sends the output folders (the adapter,
oreo's value model) back through the queue. Resuming after a crash needs the checkpoints, so on a cluster
`out_dir` should be on storage every node sees (docs/design.md §7).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from swirl.training.checkpoints import ADAPTER
from swirl.training.config import TrainConfig
from swirl.training.objectives import VALUE_DIR
from swirl.training.run import TrainSpec, run_training

OUTPUT_DIRS = (ADAPTER, VALUE_DIR)  # what the train stage copies out of out_dir


def launch_ray(
    spec: TrainSpec, on_step: Callable[[dict[str, Any]], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train with Ray Train workers; returns what `run_training` returned on rank 0."""
    import ray
    from ray.util.queue import Queue

    started = connect(spec.train)
    queue = None
    try:
        queue = Queue()
        config = {
            "spec": spec.model_dump_json(),
            "queue": queue,
            "node": ray.get_runtime_context().get_node_id(),
        }
        trainer = make_trainer(spec.train, config, spec.out_dir)
        failure: list[BaseException] = []
        fit = threading.Thread(target=_fit, args=(trainer, failure), daemon=True)
        fit.start()
        result = _drain(queue, fit, on_step)
        if failure:
            raise RuntimeError(f"train: the Ray Train workers failed: {failure[0]}") from failure[0]
        if result is None:
            raise RuntimeError("train: the Ray Train workers ended without rank 0's result")
        unpack(spec.out_dir, result.get("files", {}))
        return result["log"], result["data_summary"]
    finally:
        if queue is not None:
            queue.shutdown()  # its actor would outlive the run on a long-lived cluster
        if started:
            ray.shutdown()


def connect(cfg: TrainConfig) -> bool:
    """Join the Ray cluster (train.ray_address, else the Ray this process joined, else RAY_ADDRESS), or
    start a local one on 127.0.0.1 with no dashboard; True when this call started or joined it (and the
    launcher disconnects at the end)."""
    import ray

    if ray.is_initialized():
        return False
    if cfg.ray_address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=cfg.ray_address)  # None: ray.init reads RAY_ADDRESS
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")
    return True


def make_trainer(cfg: TrainConfig, config: dict[str, Any], out_dir: str):  # -> ray.train.torch.TorchTrainer
    """A TorchTrainer of `cfg.ray_workers` workers, each reserving its CPUs and GPU share; Ray Train's own
    run folder goes under `out_dir`."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = cfg.ray_gpus_per_worker > 0
    resources = {"CPU": cfg.ray_cpus_per_worker, **({"GPU": cfg.ray_gpus_per_worker} if gpu else {})}
    return TorchTrainer(
        _worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.ray_workers, use_gpu=gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(name="swirl-train", storage_path=os.path.abspath(os.path.join(out_dir, "ray"))),
    )


def _worker(config: dict[str, Any]) -> None:
    """One rank: `run_training` with torch.distributed already set up; rank 0 reports to the queue."""
    import ray
    import ray.train

    spec = TrainSpec.model_validate_json(config["spec"])
    queue = config["queue"]
    os.makedirs(spec.out_dir, exist_ok=True)  # on another node than the caller's, the folder is new
    if spec.train.ray_gpus_per_worker > 0:  # Dist and the model take the device from LOCAL_RANK
        from ray.train.torch import get_device

        os.environ["LOCAL_RANK"] = str(get_device().index)
    log, data_summary = run_training(spec, on_step=lambda m: queue.put({"step": m}))
    if ray.train.get_context().get_world_rank() == 0:
        remote = ray.get_runtime_context().get_node_id() != config["node"]
        files = pack(spec.out_dir) if remote else {}
        queue.put({"log": log, "data_summary": data_summary, "files": files})


def _fit(trainer, failure: list[BaseException]) -> None:
    try:
        trainer.fit()
    except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, which raises it
        failure.append(e)


def _drain(queue, fit: threading.Thread, on_step: Callable | None) -> dict[str, Any] | None:
    """Forward the step messages to `on_step` until the workers are done; returns rank 0's result."""
    from ray.util.queue import Empty

    result = None
    while True:
        alive = fit.is_alive()  # read before draining: nothing is put after the thread ends
        while True:
            try:
                msg = queue.get(timeout=0.5) if alive else queue.get_nowait()
            except Empty:
                break
            if "step" in msg:
                if on_step:
                    on_step(msg["step"])
            else:
                result = msg
        if not alive:
            return result


def pack(out_dir: str) -> dict[str, bytes]:
    """The output folders' files under `out_dir`, by path relative to it."""
    files = {}
    for top in OUTPUT_DIRS:
        for root, _, names in os.walk(os.path.join(out_dir, top)):
            for name in names:
                path = os.path.join(root, name)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, out_dir)] = f.read()
    return files


def unpack(out_dir: str, files: dict[str, bytes]) -> None:
    """Write `pack`'s files under `out_dir` (this node's copy of rank 0's output)."""
    for rel, data in files.items():
        path = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
