"""A tiny random Qwen2-architecture causal LM with a locally trained BPE tokenizer and a chat template.

It needs no network, loads in transformers and in vLLM (head_dim 64, which vLLM's CPU attention accepts), and
is what the quickstart and the tests run on. The BPE tokenizer is trained with Qwen2's own normalizer and
pre-tokenizer, so `AutoTokenizer` (which maps a qwen2 config to `Qwen2Tokenizer`), a plain fast tokenizer and
vLLM all give the same ids for the same text.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

# Qwen2-style chat markup. `{% generation %}` is not used: the trainer masks by stored action spans, not
# templates.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EXTRA_WORDS = [
    "<search_query>",
    "</search_query>",
    "<math_exp>",
    "</math_exp>",
    "<answer>",
    "</answer>",
    "system",
    "user",
    "assistant",
    " -> ",
    "GOOD",
    "BAD",
    "YES",
    "NO",
]


# Qwen2's pre-tokenization, copied so that transformers' Qwen2Tokenizer (what AutoTokenizer picks for a qwen2
# config) and the plain fast tokenizer we train build the same pipeline and give the same ids.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _train_tokenizer(vocab_size: int, seed: int) -> Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    from swirl.data.synthetic import sample_text

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is encodable: no unknown tokens
        show_progress=False,
    )
    corpus = sample_text(seed) + EXTRA_WORDS * 20
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def build_tiny_model(
    path: str,
    vocab_size: int = 2048,
    hidden_size: int = 128,
    intermediate_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 4096,
    seed: int = 0,
    overwrite: bool = False,
) -> str:
    """Build and save the tiny model + tokenizer at `path`, atomically. Skipped when `path` holds a tiny model
    built with the same settings; rebuilt when the settings differ. Returns `path`."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    spec = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "max_position_embeddings": max_position_embeddings,
        "seed": seed,
    }
    stamp = os.path.join(path, "swirl_tiny.json")
    if os.path.exists(stamp) and not overwrite:
        with open(stamp) as f:
            if json.load(f) == spec:
                return path
        overwrite = True  # built with other settings: rebuild
    if os.path.exists(path) and os.listdir(path) and not os.path.exists(stamp):
        raise FileExistsError(
            f"{path}: exists and is not a swirl tiny model folder; choose an empty or new path"
        )
    tokenizer = _tokenizer(vocab_size, max_position_embeddings, seed)
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        initializer_range=0.05,  # wider than 0.02 so greedy argmax margins are far above float noise
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_sliding_window=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tiny-", dir=parent)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        # Only ids: vLLM reads generation_config.json for default sampling settings, and we want none.
        GenerationConfig(bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _pin_tokenizer_class(tmp)
        with open(os.path.join(tmp, "swirl_tiny.json"), "w") as f:
            json.dump(spec, f, indent=2)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _tokenizer(vocab_size: int, max_length: int, seed: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on the synthetic corpus, with a ChatML template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(vocab_size, seed),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )


def _pin_tokenizer_class(folder: str) -> None:
    """Make AutoTokenizer load the fast tokenizer we trained, whatever the model type maps to."""
    p = os.path.join(folder, "tokenizer_config.json")
    with open(p) as f:
        cfg = json.load(f)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(p, "w") as f:
        json.dump(cfg, f, indent=2)
