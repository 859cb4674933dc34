"""`train.launcher: ray` (swirl/training/ray_launch.py): Ray Train workers run the same trainer as torchrun
ranks. The slow test trains the tiny model with 2 CPU workers (gloo) and compares the adapter with one
process's; the fast ones check the launch settings, the trainer's shape and the output shipping."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("ray.train")
torch = pytest.importorskip("torch")

from swirl.training.config import LoraSection, TrainConfig  # noqa: E402
from swirl.training.ray_launch import make_trainer, pack, unpack  # noqa: E402

TOL = 1e-5  # max abs difference of any adapter weight: float summation order only


def test_ray_settings_do_not_change_the_version():
    """How the trainer is launched is not what it trains: the ray fields stay out of the version config."""
    base = TrainConfig(objective="sft")
    ray = base.model_copy(
        update={"launcher": "ray", "ray_workers": 8, "ray_gpus_per_worker": 0.5, "ray_address": "auto"}
    )
    assert ray.version_config() == base.version_config()
    assert not any(k.startswith("ray_") for k in base.version_config())
    with pytest.raises(ValueError):
        TrainConfig(ray_gpus_per_worker=2)  # a rank trains on one device


@pytest.mark.parametrize(("gpus", "backend"), [(0.0, "gloo"), (1.0, "nccl")])
def test_trainer_reserves_what_the_config_asks(tmp_path, gpus, backend):
    cfg = TrainConfig(launcher="ray", ray_workers=3, ray_gpus_per_worker=gpus, ray_cpus_per_worker=2)
    trainer = make_trainer(cfg, {}, str(tmp_path))
    scaling = trainer.scaling_config
    assert scaling.num_workers == 3 and scaling.use_gpu == (gpus > 0)
    want = {"CPU": 2, "GPU": 1.0} if gpus else {"CPU": 2}
    assert scaling.resources_per_worker == want
    assert trainer.backend_config.backend == backend


def test_pack_ships_the_outputs_only(tmp_path):
    """What rank 0 on another node sends back: the adapter and the value model, not checkpoints."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for rel, data in {
        "adapter/adapter_model.safetensors": b"A",
        "adapter/adapter_config.json": b"{}",
        "value/value_head.safetensors": b"V",
        "checkpoints/step-0000001/state.pt": b"C",
        "spec.json": b"{}",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    files = pack(str(src))
    assert files == {
        os.path.join("adapter", "adapter_model.safetensors"): b"A",
        os.path.join("adapter", "adapter_config.json"): b"{}",
        os.path.join("value", "value_head.safetensors"): b"V",
    }
    unpack(str(dst), files)
    assert (dst / "adapter" / "adapter_model.safetensors").read_bytes() == b"A"
    assert (dst / "value" / "value_head.safetensors").read_bytes() == b"V"
    assert not (dst / "checkpoints").exists()


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow  # starts Ray and 2 workers, trains twice
def test_two_ray_workers_match_one_process(tmp_path, tiny_model_dir, local_ray):
    """2 Ray Train CPU workers (gloo): micro-batches split over ranks, gradients summed, rank 0 writes the
    adapter; after 3 steps it equals one process's within 1e-5."""
    from safetensors.torch import load_file

    from swirl.engines.config import EngineConfig
    from swirl.stages.base import Context, run_stage
    from swirl.stages.train import Train, adapter_path
    from tests.support.training import assert_same_adapter, build_train_store, start_weights

    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    cfg = TrainConfig(
        objective="sft",
        batch_size=8,
        max_steps=3,
        learning_rate=2e-3,
        micro_batch_tokens=600,  # several micro-batches per step: each rank gets some
        lora=LoraSection(rank=4, alpha=8),
        launcher="ray",
        ray_workers=2,
        ray_gpus_per_worker=0,
    )
    weights, steps = {}, []
    for name in ("one", "two"):
        store, inp = build_train_store(str(tmp_path / name), tiny_model_dir, n_questions=8, seed=0)
        run_cfg = cfg if name == "two" else cfg.model_copy(update={"launcher": "inprocess"})
        ctx = Context(progress=lambda m, name=name: steps.append((name, m)))
        ref = run_stage(store, Train(run_cfg, policy, (inp,)), ctx).ref
        weights[name] = load_file(os.path.join(adapter_path(ref), "adapter_model.safetensors"))
        assert ref.summary["steps"] == 3
        assert ref.summary["world_size"] == (2 if name == "two" else 1)
    # the per-step metrics came back from rank 0 while it trained, every step split over micro-batches
    ray_steps = [m for n, m in steps if n == "two" and "micro_batches" in m]
    assert [m["step"] for m in ray_steps] == [1, 2, 3] and min(m["micro_batches"] for m in ray_steps) >= 2
    start = start_weights(cfg, tiny_model_dir)["adapter/adapter_model.safetensors"]
    assert_same_adapter(weights["one"], weights["two"], start, TOL)


@pytest.mark.slow  # starts Ray and 2 workers
def test_a_failing_worker_raises_its_error(tmp_path, tiny_model_dir, local_ray):
    """A rank that fails (here: the policy model folder does not exist) fails the launch, with its error."""
    from swirl.engines.config import EngineConfig
    from swirl.training.ray_launch import launch_ray
    from swirl.training.run import TrainSpec
    from tests.support.training import build_train_store

    store, inp = build_train_store(str(tmp_path / "store"), tiny_model_dir, n_questions=4, seed=0)
    missing = str(tmp_path / "no-such-model")
    cfg = TrainConfig(objective="sft", max_steps=1, launcher="ray", ray_workers=2, ray_gpus_per_worker=0)
    out = tmp_path / "work"
    out.mkdir()
    spec = TrainSpec.of(store, cfg, EngineConfig(kind="hf", model=missing), (inp,), None, str(out))
    with pytest.raises(RuntimeError, match="Ray Train workers failed") as e:
        launch_ray(spec)
    assert "no-such-model" in str(e.value) + str(e.value.__cause__)
    assert not (out / "adapter").exists()
