"""A LoRA adapter merged into the weights: the same logits as the adapter applied at run time, one adapter
only."""

import os

import pytest


def test_merged_weights_give_the_adapters_logits(tiny_model_dir, tiny_adapter_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from swirl.engines.merged import merge_adapter

    out = merge_adapter(tiny_model_dir, tiny_adapter_dir, str(tmp_path / "merged"))
    ids = torch.tensor([[1, 5, 9, 42, 7, 3, 11]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        reference = PeftModel.from_pretrained(base, tiny_adapter_dir)(ids).logits  # LoRA applied at run time
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(ids).logits
    assert (reference - plain).abs().max() > 1e-3  # the adapter matters, so the comparison below can fail
    torch.testing.assert_close(merged, reference, atol=1e-4, rtol=1e-4)
    # The tokenizer files are copies: the merged folder tokenizes exactly as the base.
    text = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>"
    assert AutoTokenizer.from_pretrained(out).encode(text) == AutoTokenizer.from_pretrained(
        tiny_model_dir
    ).encode(text)


def test_merged_engine_serves_only_its_adapter(tiny_model_dir, tiny_adapter_dir):
    from swirl.engines import Sampling, make_engine
    from swirl.engines.config import EngineConfig

    cfg = EngineConfig(
        kind="hf", model=tiny_model_dir, adapter=tiny_adapter_dir, merge_adapter=True, dtype="float32"
    )
    eng = make_engine(cfg)
    folder = eng.folder
    try:
        assert os.path.isfile(os.path.join(folder, "config.json"))
        prompt = [1, 5, 9, 42]
        greedy = Sampling(max_tokens=6)
        merged = eng.generate([prompt], greedy, adapter=tiny_adapter_dir)[0].completions[0].token_ids
        lora = make_engine(cfg.model_copy(update={"merge_adapter": False}))
        try:
            at_run_time = (
                lora.generate([prompt], greedy, adapter=tiny_adapter_dir)[0].completions[0].token_ids
            )
            base = lora.generate([prompt], greedy)[0].completions[0].token_ids
        finally:
            lora.close()
        assert merged == at_run_time and merged != base
        with pytest.raises(ValueError, match="cannot answer a request for 'the base model'"):
            eng.generate([prompt], greedy)
        with pytest.raises(ValueError, match="merged into its weights"):
            eng.generate([prompt], greedy, adapter="/elsewhere/adapter")
    finally:
        eng.close()
    assert not os.path.exists(folder)  # the merged copy goes with the engine


def test_merge_is_part_of_the_version_only_when_an_adapter_is_served(tiny_model_dir):
    from swirl.engines.config import EngineConfig, serving_identity

    plain = EngineConfig(kind="vllm", model=tiny_model_dir)
    assert (
        serving_identity(plain)
        == serving_identity(plain.model_copy(update={"merge_adapter": True}))
        == "vllm"
    )
    with_adapter = plain.model_copy(update={"adapter": "a"})
    assert serving_identity(with_adapter) == "vllm"
    assert serving_identity(with_adapter.model_copy(update={"merge_adapter": True})) == "vllm+merged"


def test_online_swirl_cannot_sample_from_a_merged_engine():
    from pydantic import ValidationError

    from swirl.config import config_from_dict

    data = {
        "run": {"name": "t", "root": "/tmp/t"},
        "stages": ["ingest", "generate", "train"],
        "ingest": {"datasets": [{"name": "g", "format": "gsm8k", "path": "x.jsonl"}]},
        "policy": {"kind": "vllm", "model": "m", "merge_adapter": True},
        "train": {"objective": "swirl"},
    }
    with pytest.raises((ValidationError, ValueError), match="merge_adapter: false"):
        config_from_dict(data, source="test")
