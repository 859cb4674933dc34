"""HF and vLLM engines: identical greedy token ids on the tiny model, with and without a LoRA adapter."""

import os
import time

import pytest

from swirl.engines.base import Sampling, adapter_key, encode_prompt

PROMPTS = [
    [{"role": "user", "content": "Ava has 3 bags with 12 apples each. How many apples?"}],
    [
        {"role": "system", "content": "Answer in <answer> tags."},
        {"role": "user", "content": "Who was born first?"},
    ],
    [{"role": "user", "content": "In which country is Velmora?"}],
    "A raw text prompt without a template",
    [5, 17, 42, 99, 7, 301, 12],
    [{"role": "user", "content": "x" * 40}],
]
GREEDY = Sampling(max_tokens=24, logprobs=True)


def _ids(results):
    return [[c.token_ids for c in r.completions] for r in results]


def test_encode_prompt_forms(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert encode_prompt(tok, [3, 4]) == [3, 4]
    chat = encode_prompt(tok, [{"role": "user", "content": "hi"}])
    assert tok.decode(chat) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(TypeError):
        encode_prompt(tok, [{"text": "no role"}])
    with pytest.raises(ValueError):
        Sampling(n=0)


def test_hf_engine_basics(hf_engine):
    res = hf_engine.generate(PROMPTS[:2], Sampling(max_tokens=8, logprobs=True))
    for r in res:
        (c,) = r.completions
        assert len(c.token_ids) == len(c.logprobs) <= 8
        assert c.text == hf_engine.tokenizer.decode(c.token_ids, skip_special_tokens=True)
        assert all(lp <= 0 for lp in c.logprobs)
    sampled = hf_engine.generate(PROMPTS[:1], Sampling(n=3, temperature=1.0, max_tokens=8, seed=0))
    assert len(sampled[0].completions) == 3


@pytest.mark.vllm
def test_tokenizer_ids_match_vllm(vllm_engine, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for p in PROMPTS:
        assert encode_prompt(vllm_engine.tokenizer, p) == encode_prompt(tok, p)


@pytest.mark.vllm
def test_greedy_ids_identical_without_adapter(vllm_engine, hf_engine):
    hv, vv = hf_engine.generate(PROMPTS, GREEDY), vllm_engine.generate(PROMPTS, GREEDY)
    assert [r.prompt_token_ids for r in hv] == [r.prompt_token_ids for r in vv]
    assert _ids(hv) == _ids(vv)
    for a, b in zip(hv, vv, strict=True):
        ca, cb = a.completions[0], b.completions[0]
        assert ca.finish_reason == cb.finish_reason and ca.text == cb.text
        assert max(abs(x - y) for x, y in zip(ca.logprobs, cb.logprobs, strict=False)) < 1e-4


@pytest.mark.vllm
def test_greedy_ids_identical_with_adapter_that_changes_output(vllm_engine, hf_engine, tiny_adapter_dir):
    base = _ids(vllm_engine.generate(PROMPTS, GREEDY))
    hv = hf_engine.generate(PROMPTS, GREEDY, adapter=tiny_adapter_dir)
    vv = vllm_engine.generate(PROMPTS, GREEDY, adapter=tiny_adapter_dir)
    assert _ids(hv) == _ids(vv)
    changed = sum(a != b for a, b in zip(_ids(vv), base, strict=False))
    assert changed >= len(PROMPTS) - 1, "the adapter must change the greedy output"
    # and switching back to the base model works in both engines
    assert _ids(hf_engine.generate(PROMPTS, GREEDY)) == base == _ids(vllm_engine.generate(PROMPTS, GREEDY))


@pytest.mark.vllm
def test_stop_strings_identical(vllm_engine, hf_engine):
    free = vllm_engine.generate(PROMPTS, Sampling(max_tokens=24))
    tested = 0
    for p, r in zip(PROMPTS, free, strict=False):
        text = r.completions[0].text
        # a printable 4-character piece from inside the text (the tiny random model repeats itself a lot;
        # vLLM holds back incomplete UTF-8 bytes, so a stop string never contains U+FFFD)
        cands = [
            text[i : i + 4]
            for i in range(2, len(text) - 4)
            if text[i : i + 4].isprintable() and "\ufffd" not in text[i : i + 4]
        ]
        if not cands:
            continue
        stop = cands[len(cands) // 2]
        s = Sampling(max_tokens=24, stop=(stop,))
        (hv,), (vv,) = hf_engine.generate([p], s), vllm_engine.generate([p], s)
        assert hv.completions[0].token_ids == vv.completions[0].token_ids, (text, stop)
        c = vv.completions[0]
        assert c.finish_reason == "stop" and c.stop == stop and stop in c.text
        assert len(c.token_ids) <= len(r.completions[0].token_ids)
        assert hv.completions[0].stop == stop and hv.completions[0].finish_reason == "stop"
        tested += 1
    assert tested >= 2


@pytest.mark.vllm
def test_vllm_sampling_n_and_seed(vllm_engine):
    s = Sampling(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=7, logprobs=True)
    a, b = vllm_engine.generate(PROMPTS[:2], s), vllm_engine.generate(PROMPTS[:2], s)
    assert all(len(r.completions) == 3 for r in a)
    assert _ids(a) == _ids(b), "same seed, same samples"
    assert len({tuple(c.token_ids) for c in a[0].completions}) > 1, "n samples differ"
    c = vllm_engine.generate(PROMPTS[:2], Sampling(n=3, temperature=1.0, max_tokens=12, seed=8))
    assert _ids(c) != _ids(a)


def test_adapter_key_tracks_rewrites(tiny_adapter_dir, tmp_path):
    import shutil

    k1 = adapter_key(tiny_adapter_dir)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_adapter_dir, copy)
    k2 = adapter_key(str(copy))
    time.sleep(0.01)
    w = copy / "adapter_model.safetensors"
    os.utime(w, ns=(time.time_ns(), time.time_ns()))
    assert adapter_key(str(copy)) != k2 and k1 != k2
    with pytest.raises(FileNotFoundError, match="not a peft LoRA adapter"):
        adapter_key(str(tmp_path))


@pytest.mark.vllm
def test_many_seeded_long_prompts_do_not_crash_vllm_cpu(vllm_engine):
    """Regression: seeded requests whose prefill was split across steps killed vLLM's CPU worker."""
    prompts = [[{"role": "user", "content": f"question {i} " + "word " * 150}] for i in range(80)]
    res = vllm_engine.generate(prompts, Sampling(temperature=1.0, max_tokens=4), seeds=list(range(80)))
    assert len(res) == 80 and all(len(r.completions[0].token_ids) >= 1 for r in res)


def test_sampled_logprobs_from_flat_and_dict_formats():
    from types import SimpleNamespace

    from swirl.engines.vllm import _sampled_logprobs

    flat = SimpleNamespace(token_ids=[5, 9], logprobs=[-0.5, -1.25])
    assert _sampled_logprobs(flat, [5, 9]) == [-0.5, -1.25]
    per_position = [
        {5: SimpleNamespace(logprob=-0.5), 7: SimpleNamespace(logprob=-3.0)},
        {9: SimpleNamespace(logprob=-1.25)},
    ]
    assert _sampled_logprobs(per_position, [5, 9]) == [-0.5, -1.25]


def test_cpu_core_list_names_every_allowed_core():
    from swirl.engines.vllm import cpu_core_list

    assert cpu_core_list("0-3") == "0-3"
    expected = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count())
    assert cpu_core_list("all") == ",".join(map(str, expected))


# ------------------------------------------------------------------------------------- the engine pool
class _Built:
    """A pool factory that builds scripted engines and records what it built and closed."""

    def __init__(self):
        from swirl.engines.scripted import ScriptedEngine

        self.built, self.closed, self.keys = [], [], []
        outer = self

        class Recorded(ScriptedEngine):
            def close(self) -> None:
                outer.closed.append(self)

        self.engine = Recorded

    def __call__(self, cfg, api_key):
        self.keys.append(api_key)
        eng = self.engine(None, lambda prompt, seed: "", model=cfg.model)
        self.built.append(eng)
        return eng


def test_pool_shares_one_engine_across_per_request_adapters():
    from swirl.engines import EngineConfig, EnginePool

    build = _Built()
    pool = EnginePool(build)
    base = EngineConfig(kind="hf", model="m")
    engines = {id(pool.get(base.model_copy(update={"adapter": a}))) for a in (None, "/a", "/b")}
    assert len(engines) == 1 and len(build.built) == 1  # the adapter is named per request, not per engine
    other = pool.get(base.model_copy(update={"dtype": "float32"}))
    assert other is not build.built[0] and len(build.built) == 2  # any other field is another engine
    pool.close()
    assert build.closed == build.built


def test_pool_keys_merged_adapters_with_the_adapter_and_keeps_one():
    from swirl.engines import EngineConfig, EnginePool

    build = _Built()
    pool = EnginePool(build)
    plain = pool.get(EngineConfig(kind="hf", model="m", adapter="/a"))
    merged = EngineConfig(kind="hf", model="m", adapter="/a", merge_adapter=True)
    first = pool.get(merged)
    assert first is not plain  # merged weights are another model
    assert pool.get(merged) is first and build.closed == []
    second = pool.get(merged.model_copy(update={"adapter": "/b"}))
    assert second is not first and build.closed == [first]  # one merged engine at a time
    assert pool.get(EngineConfig(kind="hf", model="m")) is plain  # the plain engine stays
    pool.close()
    assert sorted(map(id, build.closed)) == sorted(map(id, build.built))


def test_pool_resolves_a_named_secret_only_when_the_engine_asks():
    from swirl.engines import EnginePool, OpenAIEngineConfig

    read: list[str] = []
    build = _Built()
    pool = EnginePool(build, read_secret=lambda name: read.append(name) or "key")
    pool.get(OpenAIEngineConfig(base_url="http://x/v1", model="m", api_key_secret="judge-key"))
    pool.get(OpenAIEngineConfig(base_url="http://x/v1", model="m", api_key_env=""))
    provider, none = build.keys
    assert read == [] and none is None
    assert provider() == "key" and read == ["judge-key"]
