"""`train.fsdp`: the base model sharded over the ranks with FSDP2 (swirl/training/fsdp.py). The slow test
trains the tiny model with 2 CPU ranks under torchrun (gloo), sharded, and compares the adapter with one
unsharded process's; the fast ones check the settings and the decoder layer lookup."""

from __future__ import annotations

import json
import os
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from swirl.training.config import LoraSection, TrainConfig  # noqa: E402
from swirl.training.dist import Dist  # noqa: E402
from swirl.training.fsdp import decoder_layer_class, wanted  # noqa: E402

TOL = 1e-5  # max abs difference of any adapter weight: float summation order only
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")


def test_fsdp_does_not_change_the_version():
    base = TrainConfig(objective="sft")
    assert base.model_copy(update={"fsdp": True}).version_config() == base.version_config()


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ({"objective": "oreo"}, "not with oreo"),
        (
            {"objective": "swirl_offline", "kl_beta": 0.1, "lora": LoraSection(init_adapter="a")},
            "init_adapter",
        ),
    ],
)
def test_fsdp_refuses_adapter_switching(update, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(fsdp=True, **update)
    TrainConfig(fsdp=False, **update)  # the same run unsharded is fine


def test_one_process_trains_unsharded_with_a_warning():
    with pytest.warns(UserWarning, match="nothing to shard"):
        assert not wanted(True, Dist())
    assert not wanted(False, Dist(rank=0, world=2))
    assert wanted(True, Dist(rank=1, world=2))


def test_decoder_layer_class_of_the_tiny_model(tiny_model_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraSection().peft_config())
    name = decoder_layer_class(model)
    assert name.endswith("DecoderLayer")
    assert sum(type(m).__name__ == name for m in model.modules()) == model.config.num_hidden_layers


@pytest.mark.slow  # trains twice, once under torchrun with 2 ranks
@pytest.mark.parametrize(
    "objective",
    [{"objective": "sft"}, {"objective": "swirl_offline", "kl_beta": 0.1}],  # with a KL: the adapter disabled
    ids=["sft", "offline-kl"],
)
def test_two_sharded_ranks_match_one_process(tmp_path, tiny_model_dir, monkeypatch, objective):
    """2 CPU ranks (gloo) with train.fsdp: each holds part of every sharded base weight, the micro-batches are
    split over them (one rank gets fewer: it pads), FSDP sums the gradients, and rank 0 writes the adapter
    gathered from the shards; after 3 steps it equals one process's within 1e-5. With a KL penalty the
    reference passes run the sharded model with its adapter disabled."""
    from safetensors.torch import load_file

    from swirl.engines.config import EngineConfig
    from swirl.stages.base import run_stage
    from swirl.stages.train import Train, adapter_path, read_train_log
    from tests.support.training import assert_same_adapter, build_train_store, start_weights

    shards = tmp_path / "shards"
    shards.mkdir()
    monkeypatch.setenv("SWIRL_TEST_SHARDS", str(shards))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    cfg = TrainConfig(
        **objective,
        batch_size=5,
        max_steps=3,
        learning_rate=2e-3,
        micro_batch_tokens=600,  # 5, 5 and 2 micro-batches: in the first two steps rank 1 runs one fewer
        lora=LoraSection(rank=4, alpha=8),
        fsdp=True,
        launcher="subprocess",
        launch_prefix=(*TORCHRUN, os.path.join(os.path.dirname(__file__), "..", "support", "fsdp_rank.py")),
    )
    weights, logs = {}, {}
    for name in ("one", "two"):
        store, inp = build_train_store(str(tmp_path / name), tiny_model_dir, n_questions=8, seed=0)
        run_cfg = cfg if name == "two" else cfg.model_copy(update={"launcher": "inprocess", "fsdp": False})
        ref = run_stage(store, Train(run_cfg, policy, (inp,))).ref
        weights[name] = load_file(os.path.join(adapter_path(ref), "adapter_model.safetensors"))
        logs[name] = read_train_log(store, ref)
        assert ref.summary["steps"] == 3 and ref.summary["world_size"] == (2 if name == "two" else 1)
    # each rank held a part of every base weight (FSDP splits dim 0), the two parts making it whole
    held = [json.loads((shards / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert held[0].keys() == held[1].keys() and any("embed_tokens" in n for n in held[0])
    for n, (local, full) in held[0].items():
        assert 0 < local < full and local + held[1][n][0] == full, n
    # some step had an odd number of micro-batches: rank 1 padded it with a zero-weight pass
    assert any(m["micro_batches"] % 2 for m in logs["two"]), [m["micro_batches"] for m in logs["two"]]
    if cfg.kl_beta:  # the KL term acted (the adapter moved away from the base after step 1)
        assert max(m["kl"] for m in logs["two"]) > 0
    start = start_weights(cfg, tiny_model_dir)["adapter/adapter_model.safetensors"]
    assert_same_adapter(weights["one"], weights["two"], start, TOL)


@pytest.mark.slow  # trains under torchrun with 2 ranks twice
def test_a_sharded_run_resumes_from_its_checkpoint(tmp_path, tiny_model_dir):
    """A sharded run's checkpoint holds the full LoRA weights and optimiser state gathered from the shards;
    a sharded run resumed from it (every rank loading its shards back) ends with the uninterrupted adapter.
    In bfloat16 with gradient checkpointing, as on a GPU: bf16 base, fp32 LoRA weights in one shard group."""
    import shutil

    from safetensors.torch import load_file

    from swirl.engines.config import EngineConfig
    from swirl.training.run import TrainSpec, launch
    from tests.support.training import build_train_store

    store, inp = build_train_store(str(tmp_path / "store"), tiny_model_dir, n_questions=8, seed=0)
    cfg = TrainConfig(
        objective="sft",
        batch_size=5,
        max_steps=3,
        learning_rate=2e-3,
        micro_batch_tokens=600,
        checkpoint_every=2,
        keep_checkpoints=3,
        dtype="bfloat16",
        gradient_checkpointing=True,
        lora=LoraSection(rank=4, alpha=8),
        fsdp=True,
        launcher="subprocess",
        launch_prefix=TORCHRUN,
    )
    work = tmp_path / "work"
    work.mkdir()
    spec = TrainSpec.of(store, cfg, EngineConfig(kind="hf", model=tiny_model_dir), (inp,), None, str(work))
    adapter = work / "adapter" / "adapter_model.safetensors"
    launch(spec)
    whole = load_file(str(adapter))
    ckpt = torch.load(work / "checkpoints" / "step-0000002" / "state.pt", weights_only=False)
    assert ckpt["optimizer_by_name"] and len(ckpt["trainable"]) == len(whole)
    assert all(not hasattr(t, "to_local") for t in ckpt["trainable"].values())  # whole tensors, not shards
    shutil.rmtree(work / "checkpoints" / "step-0000003")
    adapter.unlink()
    log, _ = launch(spec)  # resumes after step 2
    assert [m["step"] for m in log] == [1, 2, 3]
    again = load_file(str(adapter))
    worst = max(float((whole[k] - again[k]).abs().max()) for k in whole)
    assert worst <= TOL, worst
