"""The evaluate stage and its report, with a scripted engine whose answers are known per question and policy.

Ten GSM8K-style questions "What is i + i?" (gold 2i). The scripted policy calculates once, then answers:
without an adapter it is right for even i only; with an adapter it is right for every i. So on the 10
questions the base model scores 5/10 and the adapter 10/10, and they disagree on exactly the 5 odd questions
(only_b = 5, only_a = 0).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

from swirl.data.config import DatasetSpec
from swirl.engines.config import EngineConfig
from swirl.engines.scripted import ScriptedEngine
from swirl.episodes import GenerateConfig
from swirl.evaluation.config import EvaluateConfig
from swirl.judging.config import JudgeConfig
from swirl.stages.base import Context, run_stage
from swirl.stages.evaluate import EvalPolicy, Evaluate, Report, ReportEntry
from swirl.stages.ingest import Ingest
from swirl.store import StageRef, Store

N_Q = 10


def write_questions(folder: str) -> str:
    path = os.path.join(folder, "test.jsonl")
    with open(path, "w") as f:
        f.writelines(
            json.dumps({"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"}) + "\n"
            for i in range(N_Q)
        )
    return path


def evaluate_job(cfg, gen, policy, spec, qref, judge=None) -> Evaluate:
    label = "trained" if policy.adapter else "base"
    return Evaluate(cfg, gen, EvalPolicy(label, policy), spec, qref, judge=judge)


def evaluate_version(cfg, gen, policy, spec, qref, judge=None) -> str:
    return evaluate_job(cfg, gen, policy, spec, qref, judge).plan().version


def run_report(store: Store, entries, cfg: EvaluateConfig, title: str) -> StageRef:
    return run_stage(store, Report(tuple(entries), cfg, title)).ref


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read() if mode == "rb" else (json.load(f) if path.endswith(".json") else f.read())


class PolicyEngine(ScriptedEngine):
    """Answers i+i correctly for even i; with any adapter, for every i. Remembers which adapters it served."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, self._say)
        self.adapter: str | None = None
        self.served: list[str | None] = []

    def generate(self, prompts, sampling, adapter=None, seeds=None):
        self.adapter = adapter
        self.served.append(adapter)
        return super().generate(prompts, sampling, adapter=adapter, seeds=seeds)

    def _say(self, prompt: str, seed: int | None) -> str:
        i = int(re.search(r"What is (\d+) \+", prompt).group(1))
        if prompt.count("<|im_start|>assistant") == 1:
            return f"<math_exp>{i} + {i}</math_exp>"
        right = self.adapter is not None or i % 2 == 0
        return f"The sum is <answer>{2 * i if right else 2 * i + 1}</answer>"


def setup(root: str, tiny_model_dir: str, questions: int = N_Q):
    from transformers import AutoTokenizer

    from swirl.tools.calculator import calculate

    store = Store(os.path.join(root, "store"))
    spec = DatasetSpec(name="gsm8k_test", format="gsm8k", split="test", path=write_questions(root))
    qref = run_stage(store, Ingest(spec)).ref
    cfg = EvaluateConfig(questions=questions, shard_questions=3)
    gen = GenerateConfig(max_steps_math=3, max_tokens_per_step=32)
    base = EngineConfig(kind="hf", model=tiny_model_dir, max_model_len=1024)
    engine = PolicyEngine(AutoTokenizer.from_pretrained(tiny_model_dir))
    return store, spec, qref, cfg, gen, base, engine, {"math": calculate}


def run_policy(root: str, tiny_model_dir: str, adapter: str | None = None, **cfg_update):
    store, spec, qref, cfg, gen, base, engine, tools = setup(root, tiny_model_dir)
    cfg = cfg.model_copy(update=cfg_update)
    policy = base.model_copy(update={"adapter": adapter})
    job = evaluate_job(cfg, gen, policy, spec, qref)
    return store, run_stage(store, job, Context(engines={"policy": engine}, tools=tools)).ref


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tiny_adapter_dir, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("eval"))
    store, base = run_policy(root, tiny_model_dir)
    _, trained = run_policy(root, tiny_model_dir, adapter=tiny_adapter_dir)
    return store, base, trained, root


def test_rows_verdicts_and_summary(evaluated):
    store, base, trained, _ = evaluated
    rows = store.read_ref(base).to_pylist()
    assert len(rows) == N_Q and len({r["question_id"] for r in rows}) == N_Q
    by_i = {int(re.search(r"What is (\d+)", r["messages"][0]["content"]).group(1)): r for r in rows}
    assert [by_i[i]["rule_correct"] for i in range(N_Q)] == [i % 2 == 0 for i in range(N_Q)]
    assert by_i[3]["prediction"] == "7" and by_i[4]["prediction"] == "8"
    r = by_i[4]
    assert r["num_actions"] == 2 and r["tool_calls"] == 1 and r["invalid_actions"] == 0
    assert r["stop_reason"] == "answer" and r["decoding"] == "greedy" and r["adapter"] == ""
    assert r["messages"][2]["content"] == "4 + 4 -> 8"  # the calculator's observation is part of the episode
    assert r["em"] is None and r["contains"] is None and r["judge_correct"] is None  # math: no QA scores
    s = base.summary
    assert s["questions"] == N_Q and s["accuracy_rule"] == 0.5
    # 95% Wilson interval of 5/10, by the closed form: centre (p + z²/2n)/(1 + z²/n), z = 1.95996
    assert s["accuracy_rule_low"] == pytest.approx(0.2366, abs=1e-4)
    assert s["accuracy_rule_high"] == pytest.approx(0.7634, abs=1e-4)
    assert s["actions_per_episode"] == 2 and s["no_answer_rate"] == 0 and s["invalid_action_rate"] == 0
    assert trained.summary["accuracy_rule"] == 1.0
    assert all(r["adapter"] for r in store.read_ref(trained).to_pylist())


def test_report_compares_policies_on_the_same_questions(evaluated, tiny_model_dir):
    store, base, trained, _ = evaluated
    cfg = EvaluateConfig(bootstrap_resamples=2000)
    entries = [ReportEntry("base", "", base), ReportEntry("trained", "gsm8k", trained)]
    ref = run_report(store, entries, cfg, "test round")
    s = ref.summary["gsm8k_test"]["trained"]
    assert s["accuracy"] == 1.0 and s["gain_vs_base"] == 0.5 and s["relative_gain_vs_base"] == 1.0
    assert s["mcnemar_p"] == pytest.approx(2 * 0.5**5)  # exact McNemar, 5 discordant pairs all one way
    assert 0 < s["gain_low"] <= 0.5 <= s["gain_high"] <= 0.9
    files = store.files_path(ref.stage, ref.version)
    md = read(f"{files}/report.md")
    assert "+0.500 (+100.0%)" in md and "gsm8k_test" in md and "trained (trained on gsm8k)" in md
    assert read(f"{files}/heatmap.png", "rb")[:4] == b"\x89PNG"
    cells = read(f"{files}/report.json")
    assert {c["policy"] for c in cells} == {"base", "trained"}
    assert run_report(store, entries, cfg, "test round") == ref  # a store hit


def test_report_cells_compare_with_a_chosen_baseline(evaluated):
    from swirl.stages.evaluate import report_cells

    store, base, trained, _ = evaluated
    cfg = EvaluateConfig(bootstrap_resamples=200)
    # The trained policy as the baseline: base is 5 correct answers behind it (5/10 vs 10/10).
    cells = {
        c.policy: c
        for c in report_cells(
            store, [ReportEntry("base", "", base), ReportEntry("warm", "", trained)], cfg, baseline="warm"
        )
    }
    assert cells["warm"].vs_base is None
    assert cells["base"].vs_base.diff == -0.5 and cells["base"].vs_base.mcnemar_p == pytest.approx(2 * 0.5**5)


def test_report_refuses_unpaired_samples(evaluated, tiny_model_dir, tiny_adapter_dir):
    store, base, _, root = evaluated
    _, other = run_policy(root, tiny_model_dir, adapter=tiny_adapter_dir, questions=6)
    with pytest.raises(ValueError, match="different questions of 'gsm8k_test'"):
        run_report(store, [ReportEntry("base", "", base), ReportEntry("x", "", other)], EvaluateConfig(), "t")
    # ... unless both are restricted to the questions the smaller sample holds: a paired comparison on those
    from swirl.stages.evaluate import report_cells

    subset = {r["question_id"] for r in store.read_ref(other).to_pylist()}
    base_right = sum(
        r["rule_correct"] for r in store.read_ref(base).to_pylist() if r["question_id"] in subset
    )
    assert len(subset) == 6 and 0 < base_right < 6
    cells = report_cells(
        store,
        [ReportEntry("base", "", base), ReportEntry("x", "", other)],
        EvaluateConfig(bootstrap_resamples=200),
        question_ids={"gsm8k_test": subset},
    )
    assert [(c.policy, c.rule.n) for c in cells] == [("base", 6), ("x", 6)]
    assert cells[0].rule.rate == base_right / 6 and cells[1].rule.rate == 1.0  # the adapter answers all
    assert cells[1].vs_base.diff == pytest.approx(1.0 - base_right / 6)


def test_sample_is_seeded_and_shared_by_policies(evaluated, tiny_model_dir, tiny_adapter_dir, tmp_path):
    store, a = run_policy(str(tmp_path), tiny_model_dir, questions=4, seed=1)
    _, b = run_policy(str(tmp_path), tiny_model_dir, adapter=tiny_adapter_dir, questions=4, seed=1)
    _, c = run_policy(str(tmp_path), tiny_model_dir, questions=4, seed=2)

    def ids(ref):
        return sorted(r["question_id"] for r in store.read_ref(ref).to_pylist())

    assert len(ids(a)) == 4 and ids(a) == ids(b) and ids(a) != ids(c)
    stored = read(os.path.join(store.files_path(a.stage, a.version), "sampled_question_ids.json"))
    assert sorted(stored) == ids(a)


def test_version_changes_with_the_adapter_only_for_that_policy(evaluated, tiny_model_dir, tiny_adapter_dir):
    store, base, trained, root = evaluated
    _, spec, qref, cfg, gen, policy, _, _ = setup(root, tiny_model_dir)
    assert evaluate_version(cfg, gen, policy, spec, qref) == base.version
    assert (
        evaluate_version(cfg, gen, policy.model_copy(update={"adapter": tiny_adapter_dir}), spec, qref)
        == trained.version
    )
    # how the work is cut does not change the results
    assert (
        evaluate_version(
            cfg.model_copy(update={"shard_questions": 7, "bootstrap_resamples": 500}), gen, policy, spec, qref
        )
        == base.version
    )
    assert evaluate_version(cfg.model_copy(update={"seed": 3}), gen, policy, spec, qref) != base.version
    assert (
        evaluate_version(cfg, gen.model_copy(update={"max_steps_math": 4}), policy, spec, qref)
        != base.version
    )

    def factory():
        raise AssertionError("a complete evaluation must not start an engine")

    ctx = Context(engines=lambda engine_cfg: factory(), tools={})
    again = run_stage(store, evaluate_job(cfg, gen, policy, spec, qref), ctx)
    assert again.ref == base and not again.computed


# --------------------------------------------------------------------------------------- LLM judge
class GraderEngine(ScriptedEngine):
    """Says YES when the answer equals the key, NO otherwise; no verdict for the question about 0 + 0."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, self._grade, model="grader")

    @staticmethod
    def _grade(prompt: str, seed: int | None) -> str:
        key = re.search(r"answer key says: (.*)", prompt).group(1).strip()
        mine = re.search(r"My answer is: (.*)", prompt).group(1).strip()
        if "What is 0 + 0" in prompt:
            return "I cannot tell."
        return "Checking the key.\nYES" if key == mine else "They differ.\nNO"


def test_llm_judge_verdicts(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from swirl.engines.config import OpenAIEngineConfig

    store, spec, qref, cfg, gen, policy, engine, tools = setup(str(tmp_path), tiny_model_dir)
    judge = JudgeConfig(
        engine=OpenAIEngineConfig(base_url="http://127.0.0.1:9/v1", model="grader"), max_reasks=0
    )
    grader = GraderEngine(AutoTokenizer.from_pretrained(tiny_model_dir))
    cfg = cfg.model_copy(update={"llm_judge": True})
    ctx = Context(engines={"policy": engine, "judge": grader}, tools=tools)
    ref = run_stage(store, evaluate_job(cfg, gen, policy, spec, qref, judge), ctx).ref
    rows = {r["question_id"]: r for r in store.read_ref(ref).to_pylist()}
    zero = next(r for r in rows.values() if "What is 0 +" in r["messages"][0]["content"])
    assert zero["judge_correct"] is None and zero["judge_text"] == "I cannot tell."
    others = [r for r in rows.values() if r is not zero]
    assert all(r["judge_correct"] == r["rule_correct"] for r in others)
    # 4 of the 5 right answers (0 + 0 has no verdict: not correct)
    assert ref.summary["accuracy_judge"] == 0.4
    assert ref.summary["judge_no_verdict"] == 1
    assert ref.version == evaluate_version(cfg, gen, policy, spec, qref, judge)
    assert ref.version != evaluate_version(
        cfg.model_copy(update={"llm_judge": False}), gen, policy, spec, qref, judge
    )


# ---------------------------------------------------------------------------------------- QA rows
def test_qa_scores_of_an_episode():
    from swirl.judging.config import OutcomeJudgeConfig
    from swirl.protocol import parse_action
    from swirl.rollout import Trajectory
    from swirl.stages.evaluate import score_episode

    t = Trajectory("q#0", "q", 0, "search", [{"role": "user", "content": "Q"}], [1])
    t.actions = [
        parse_action("<search_query>x</search_query>"),
        parse_action("oops"),
        parse_action("<answer>It was Paris, France</answer>"),
    ]
    t.final_answer, t.stop_reason = "It was Paris, France", "answer"
    q = {"question_id": "q", "dataset": "hotpotqa_dev", "answers": ["Paris", "City of Light"]}
    row = score_episode(t, q, False, OutcomeJudgeConfig(), EngineConfig(kind="hf", model="m"), "greedy")
    # tokens after SQuAD normalisation: [it, was, paris, france] vs [paris]: precision 1/4, recall 1 -> F1 0.4
    assert row["em"] == 0.0 and row["f1"] == pytest.approx(0.4) and row["contains"] is True
    assert row["rule_correct"] is False  # qa_rule em
    assert row["num_actions"] == 3 and row["tool_calls"] == 1 and row["invalid_actions"] == 1
    f1_rule = OutcomeJudgeConfig(qa_rule="f1", f1_threshold=0.4)
    assert (
        score_episode(t, q, False, f1_rule, EngineConfig(kind="hf", model="m"), "greedy")["rule_correct"]
        is True
    )
    t.stop_reason = "max_steps"  # an episode that never answered has no prediction
    assert (
        score_episode(t, q, False, OutcomeJudgeConfig(), EngineConfig(kind="hf", model="m"), "greedy")[
            "prediction"
        ]
        == ""
    )


# ------------------------------------------------------------------------------------- SIGKILL resume
CHILD = textwrap.dedent(
    f"""
    import os, signal, sys
    sys.path.insert(0, {os.getcwd()!r})
    import swirl.stages.evaluate as ev
    from tests.unit.test_evaluate import run_policy

    root, model, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    real = ev.run_episodes
    calls = [0]

    def run_episodes(*a, **k):
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        return real(*a, **k)

    ev.run_episodes = run_episodes
    run_policy(root, model)
    """
)


def _rows(store: Store, ref) -> Sequence[tuple]:
    return sorted(
        (r["question_id"], r["prediction"], r["rule_correct"], str(r["messages"]))
        for r in store.read_ref(ref).to_pylist()
    )


@pytest.mark.parametrize("kill_at", [1, 3])
def test_sigkill_during_evaluation_then_rerun(tmp_path, tiny_model_dir, evaluated, kill_at):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    rc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), tiny_model_dir, str(kill_at)], env=env, check=False
    ).returncode
    assert rc == -signal.SIGKILL
    store, ref = run_policy(str(tmp_path), tiny_model_dir)  # the re-run
    ref_store, base, _, _ = evaluated
    assert _rows(store, ref) == _rows(ref_store, base)  # every question exactly once, same episodes
    assert ref.summary["resumed_questions"] == 3 * kill_at  # shards of 3 questions finished before the kill
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "store" / "evaluate").iterdir())


# ------------------------------------------------------------------------------------------- vLLM
@pytest.mark.vllm
def test_two_evaluations_on_vllm_are_identical(vllm_engine, tiny_model_dir, tmp_path):
    from swirl.tools.calculator import calculate

    outs = []
    for k in range(2):
        store = Store(str(tmp_path / f"s{k}"))
        spec = DatasetSpec(
            name="gsm8k_test", format="gsm8k", split="test", path=write_questions(str(tmp_path))
        )
        qref = run_stage(store, Ingest(spec)).ref
        cfg = EvaluateConfig(questions=6, seed=4, shard_questions=4)
        gen = GenerateConfig(max_steps_math=3, max_tokens_per_step=24)
        policy = EngineConfig(kind="vllm", model=tiny_model_dir, max_model_len=1024, dtype="float32")
        ctx = Context(engines={"policy": vllm_engine}, tools={"math": calculate})
        ref = run_stage(store, evaluate_job(cfg, gen, policy, spec, qref), ctx).ref
        outs.append([{k: v for k, v in r.items()} for r in store.read_ref(ref).to_pylist()])
    assert outs[0] == outs[1] and len(outs[0]) == 6
