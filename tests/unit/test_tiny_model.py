import json
import os

import pytest

from swirl.models.tiny import build_tiny_model

TEXTS = [
    "Ava has 3 bags with 12 apples each. How many apples? <math_exp>3 * 12</math_exp>",
    "  leading spaces,\n\nnew lines\tand tabs  ",
    "unicode: café, naïve, 東京, emoji 🙂, 1,600.00 $",
    "<search_query>Velmora country</search_query> -> Velmora is a city in Quandar.",
]


def test_tokenizer_ids_round_trip(tiny_model_dir, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    raw = Tokenizer.from_file(os.path.join(tiny_model_dir, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(tiny_model_dir)
    fast = PreTrainedTokenizerFast.from_pretrained(tiny_model_dir)
    auto.save_pretrained(tmp_path / "resaved")
    again = AutoTokenizer.from_pretrained(tmp_path / "resaved")
    for text in TEXTS:
        ids = raw.encode(text).ids
        assert auto.encode(text, add_special_tokens=False) == ids
        assert fast.encode(text, add_special_tokens=False) == ids
        assert again.encode(text, add_special_tokens=False) == ids
        assert auto.decode(ids) == text  # byte-level BPE: lossless


def test_chat_template_and_special_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2  # special tokens are single ids
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_model_shape_and_rebuild_rules(tiny_model_dir, tmp_path):
    cfg = json.load(open(os.path.join(tiny_model_dir, "config.json")))
    assert cfg["model_type"] == "qwen2" and cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    gen = json.load(open(os.path.join(tiny_model_dir, "generation_config.json")))
    # no sampling defaults for vLLM
    assert not {"temperature", "top_p", "top_k", "repetition_penalty"} & set(gen)
    p = str(tmp_path / "m")
    build_tiny_model(p, vocab_size=512, seed=1)
    w = os.path.getmtime(os.path.join(p, "model.safetensors"))
    build_tiny_model(p, vocab_size=512, seed=1)  # same settings: kept
    assert os.path.getmtime(os.path.join(p, "model.safetensors")) == w
    build_tiny_model(p, vocab_size=600, seed=1)  # other settings: rebuilt
    assert json.load(open(os.path.join(p, "swirl_tiny.json")))["vocab_size"] == 600
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_model(str(tmp_path / "other"))


def test_build_is_deterministic(tmp_path):
    from safetensors.numpy import load_file

    a, b = (
        build_tiny_model(str(tmp_path / "a"), vocab_size=400),
        build_tiny_model(str(tmp_path / "b"), vocab_size=400),
    )
    assert open(os.path.join(a, "tokenizer.json")).read() == open(os.path.join(b, "tokenizer.json")).read()
    wa, wb = load_file(os.path.join(a, "model.safetensors")), load_file(os.path.join(b, "model.safetensors"))
    assert all((wa[k] == wb[k]).all() for k in wa)
