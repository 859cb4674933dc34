"""The beam search's value scorer (swirl.models.value.ValueScorer): prefixes that share their leading tokens
are scored from one cached pass of those tokens; the values must equal each prefix run alone through the
value adapter and head (the reference: no padding, no cache, no grouping)."""

from __future__ import annotations

import random

import pytest
import torch


@pytest.fixture(scope="module")
def value_dir(tiny_model_dir, tmp_path_factory) -> str:
    """A value model folder with random, non-zero adapter and head weights."""
    from swirl.models.random_lora import lora_config, save_random_value_model

    lora = lora_config(4, 8, ["q_proj", "v_proj", "up_proj"])
    folder = str(tmp_path_factory.mktemp("value") / "value")
    return save_random_value_model(tiny_model_dir, folder, lora=lora, std=0.5, head_std=1.0, seed=3)


def _reference_values(model_dir: str, value_dir: str, prefixes: list[list[int]]) -> list[float]:
    """V(prefix): the value adapter's last hidden state at the prefix's last token, through the head; one
    unpadded sequence at a time."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), value_dir
    )
    weight = load_file(f"{value_dir}/value_head.safetensors")["weight"]  # [1, H]
    out = []
    with torch.no_grad():
        for p in prefixes:
            hidden = model(input_ids=torch.tensor([p]), output_hidden_states=True).hidden_states[
                -1
            ]  # [1, T, H]
            out.append(float(hidden[0, -1] @ weight[0]))
    return out


def test_shared_prefix_scoring_equals_each_prefix_alone(tiny_model_dir, value_dir):
    from swirl.models.value import ValueScorer

    rng = random.Random(0)
    prompt = [rng.randrange(5, 200) for _ in range(40)]  # a question's prompt, shared by its candidates
    other = [rng.randrange(5, 200) for _ in range(45)]  # another question's
    prefixes = [prompt + [rng.randrange(5, 200) for _ in range(n)] for n in (1, 9, 3, 17, 6)]
    prefixes += [other + [7, 8], prompt[:10] + [9, 9, 9], other + [1] * 12, prompt + prefixes[3][40:45]]
    expected = _reference_values(tiny_model_dir, value_dir, prefixes)
    assert max(expected) - min(expected) > 0.1  # the values differ, so a mix-up would show

    shared = ValueScorer(tiny_model_dir, value_dir, batch_size=3, min_shared=32)(prefixes)
    whole = ValueScorer(tiny_model_dir, value_dir, batch_size=3, min_shared=0)(prefixes)
    assert shared == pytest.approx(expected, abs=1e-4)
    assert whole == pytest.approx(expected, abs=1e-4)


def test_prefixes_are_grouped_by_the_tokens_they_share():
    from swirl.models.value import _shared_groups

    a = [1, 2, 3, 4, 5, 6]
    prefixes = [a + [7], a + [8, 9], [1, 2, 9], a, a[:4] + [0]]
    # a + [7] and a + [8, 9] share 6 tokens; `a` itself needs its last token run: 5; a[:4] + [0] shares 4
    assert _shared_groups(prefixes, min_shared=4) == [([0, 1, 3, 4], 4), ([2], 0)]
    assert _shared_groups(prefixes, min_shared=5) == [([0, 1, 3], 5), ([2], 0), ([4], 0)]
    assert _shared_groups(prefixes, min_shared=0) == [([i], 0) for i in range(5)]
