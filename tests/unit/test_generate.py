"""The generate stage: shards, resume after SIGKILL, summary, sample artifact; with a scripted engine."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from swirl.data.config import DatasetSpec
from swirl.engines.config import EngineConfig
from swirl.episodes import GenerateConfig
from swirl.stages.base import Context, run_stage
from swirl.stages.generate import Generate
from swirl.stages.ingest import Ingest
from swirl.store import Store

N_Q, SAMPLES = 7, 3


def write_questions(folder: str) -> str:
    path = os.path.join(folder, "train.jsonl")
    with open(path, "w") as f:
        for i in range(N_Q):
            f.write(
                json.dumps(
                    {
                        "question": f"What is {i} + {i}?",
                        "answer": f"{i}+{i}=<<{i}+{i}={2 * i}>>\n#### {2 * i}",
                    }
                )
                + "\n"
            )
    return path


def script(prompt: str, seed: int | None) -> str:
    """Calculate once, then answer; the seed picks a (deterministic) wrong or right answer."""
    if prompt.count("<|im_start|>assistant") == 1:
        return "Let me add. <math_exp>1 + 1</math_exp>"
    return f"<answer>{seed % 5}</answer>"


def setup(root: str, tiny_model_dir: str):
    from transformers import AutoTokenizer

    from swirl.engines.scripted import ScriptedEngine

    store = Store(os.path.join(root, "store"))
    spec = DatasetSpec(name="gsm8k", format="gsm8k", path=write_questions(root))
    questions = run_stage(store, Ingest(spec)).ref
    cfg = GenerateConfig(
        samples_per_question=SAMPLES, shard_questions=2, max_steps_math=3, max_tokens_per_step=32
    )
    policy = EngineConfig(kind="hf", model=tiny_model_dir, max_model_len=1024)
    engine = ScriptedEngine(AutoTokenizer.from_pretrained(tiny_model_dir), script)
    from swirl.tools.calculator import calculate

    return store, spec, questions, cfg, policy, engine, {"math": calculate}


def run_all(root: str, tiny_model_dir: str):
    store, spec, questions, cfg, policy, engine, tools = setup(root, tiny_model_dir)
    job = Generate(cfg, policy, spec, questions)
    return store, run_stage(store, job, Context(engines={"policy": engine}, tools=tools)).ref


CHILD = textwrap.dedent(
    f"""
    import os, signal, sys
    sys.path.insert(0, {os.getcwd()!r})
    import swirl.stages.generate as g
    from tests.unit.test_generate import run_all

    root, model, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real = g.run_episodes  # one call per shard
    calls = [0]

    def run_episodes(*a, **k):
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return real(*a, **k)

    g.run_episodes = run_episodes
    run_all(root, model)
    """
)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("gen-ref"))
    store, ref = run_all(root, tiny_model_dir)
    return store, ref, root


def _key_rows(table):
    return sorted((r["trajectory_id"], r["final_answer"], tuple(r["token_ids"])) for r in table.to_pylist())


def test_generate_rows_summary_and_artifact(reference):
    store, ref, _ = reference
    t = store.read_ref(ref)
    assert t.num_rows == N_Q * SAMPLES
    pairs = [(r["question_id"], r["sample_idx"]) for r in t.to_pylist()]
    assert len(set(pairs)) == len(pairs) == N_Q * SAMPLES
    s = ref.summary
    assert s["trajectories"] == N_Q * SAMPLES and s["questions"] == N_Q
    assert s["stop_reasons"] == {"answer": N_Q * SAMPLES}
    assert s["tool_calls"]["math"] == N_Q * SAMPLES and s["tool_calls"]["answer"] == N_Q * SAMPLES
    assert s["actions_per_trajectory"] == 2 and s["invalid_rate"] == 0
    row = t.to_pylist()[0]
    assert row["messages"][2]["content"] == "1 + 1 -> 2"
    md = open(os.path.join(store.files_path("generate", ref.version), "samples.md")).read()
    assert "action 1: math" in md and "1 + 1 -> 2" in md


def test_rerun_is_noop_and_never_starts_an_engine(reference, tiny_model_dir):
    store, ref, root = reference
    _, spec, questions, cfg, policy, _, tools = setup(root, tiny_model_dir)

    def factory():
        raise AssertionError("a complete output must not start an engine")

    res = run_stage(
        store,
        Generate(cfg, policy, spec, questions),
        Context(engines=lambda engine_cfg: factory(), tools=tools),
    )
    assert res.ref == ref and not res.computed


@pytest.mark.parametrize("kill_at", [0, 1, 3])
def test_sigkill_during_generation_then_rerun(tmp_path, tiny_model_dir, reference, kill_at):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), tiny_model_dir, str(kill_at)], env=env
    ).returncode
    assert rc == -signal.SIGKILL
    partial = tmp_path / "store" / "generate"
    store, ref = run_all(str(tmp_path), tiny_model_dir)  # the re-run
    t = store.read_ref(ref)
    # same seeds, same trajectories
    # every (question, sample) exactly once
    assert _key_rows(t) == _key_rows(reference[0].read_ref(reference[1]))
    assert ref.summary["resumed_questions"] == 2 * kill_at  # shards of 2 questions finished before the kill
    assert not any(p.name.endswith(".partial") for p in partial.iterdir())


def test_version_depends_on_config_and_policy(reference, tiny_model_dir, tmp_path):
    store, ref, root = reference
    _, spec, questions, cfg, policy, _, _ = setup(root, tiny_model_dir)

    def generate_version(cfg, policy):
        return Generate(cfg, policy, spec, questions, None).plan().version

    v = generate_version(cfg, policy)
    assert v == ref.version
    assert generate_version(cfg.model_copy(update={"temperature": 0.5}), policy) != v
    assert generate_version(cfg.model_copy(update={"sample_markdown": 1}), policy) == v
    assert generate_version(cfg, policy.model_copy(update={"max_model_len": 512})) != v
