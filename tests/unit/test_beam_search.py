"""OREO's value-guided beam search (docs/method.md §2, swirl/evaluation/beam.py) with the scripted engine as
the policy and a scripted value: B = 1 is greedy decoding; B > 1 returns the candidate the value ranks first;
the evaluate config's checks."""

from __future__ import annotations

import re

import pytest

from swirl.evaluation.config import EvaluateConfig


def test_beam_config_is_checked_and_recorded():
    with pytest.raises(ValueError, match="evaluate.value_model: beam decoding"):
        EvaluateConfig(decoding="beam", temperature=0.7)
    with pytest.raises(ValueError, match="evaluate.temperature: beam decoding"):
        EvaluateConfig(decoding="beam", value_model="v", beam_width=4)
    assert EvaluateConfig(decoding="beam", value_model="v", beam_width=1).decoding_label == "beam(B=1,greedy)"
    beam = EvaluateConfig(decoding="beam", value_model="v", temperature=0.7, beam_width=7)
    assert beam.decoding_label == "beam(B=7,sample(t=0.7,p=1))"
    assert EvaluateConfig().decoding_label == "greedy"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _double(expr: str) -> str:
    return f"{expr} -> {int(expr.split('*')[0]) * 2}"


def _script(prompt: str, seed: int | None) -> str:
    """Step 1: '<math_exp>x * 2</math_exp>' with x = seed % 50; step 2: answer the tool's result plus
    seed % 5."""
    if prompt.count("<|im_start|>assistant") == 1:
        return f"Double it. <math_exp>{seed % 50} * 2</math_exp>"
    result = int(re.findall(r"-> (\d+)", prompt)[-1])
    return f"So <answer>{result + seed % 5}</answer>"


def _starts(tok, n_questions=2):
    from swirl.protocol import MATH_PROMPT, render_prompt
    from swirl.rollout import ChatSegments, start_trajectories

    questions = [
        {"question_id": f"q{i}", "question": f"Double a number ({i}).", "task": "math"}
        for i in range(n_questions)
    ]
    return start_trajectories(
        questions,
        1,
        lambda q: [{"role": "user", "content": render_prompt(MATH_PROMPT, q["question"], 3)}],
        ChatSegments(tok),
    )


def _answer_value(tok):
    """A scripted value: the number in the last <answer> (else in the last tool result), as decoded."""

    def score(prefixes):
        out = []
        for ids in prefixes:
            text = tok.decode(ids)
            nums = re.findall(r"<answer>(\d+)</answer>", text) or re.findall(r"-> (\d+)", text)
            out.append(float(nums[-1]))
        return out

    return score


def test_beam_width_one_is_greedy_decoding(tok):
    from swirl.engines.scripted import ScriptedEngine
    from swirl.evaluation.beam import beam_search
    from swirl.rollout import RolloutSettings, rollout

    settings = RolloutSettings(max_steps=3, temperature=0.0, seed=4)
    greedy = rollout(ScriptedEngine(tok, _script), _starts(tok), {"math": _double}, settings)
    calls = []

    def scorer(prefixes):
        calls.append(len(prefixes))
        return [0.0] * len(prefixes)

    beam = beam_search(ScriptedEngine(tok, _script), _starts(tok), {"math": _double}, settings, scorer, 1)
    for g, b in zip(greedy, beam, strict=True):
        assert (b.token_ids, b.messages, b.action_spans) == (g.token_ids, g.messages, g.action_spans)
        assert (b.final_answer, b.stop_reason, b.trajectory_id) == (
            g.final_answer,
            g.stop_reason,
            g.trajectory_id,
        )
    assert greedy[0].stop_reason == "answer" and calls == []  # one candidate per beam: nothing to rank


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_beam_search_returns_the_candidate_the_value_ranks_first(tok, sign):
    from swirl.engines.scripted import ScriptedEngine
    from swirl.evaluation.beam import beam_search
    from swirl.rollout import RolloutSettings, trajectory_seed

    width = 3
    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    value = _answer_value(tok)
    got = beam_search(
        ScriptedEngine(tok, _script),
        _starts(tok),
        {"math": _double},
        settings,
        lambda ps: [sign * v for v in value(ps)],
        width,
    )
    for t in got:
        # every candidate by hand: step 1 samples x = (s1 + j) % 50 (j < B), the tool doubles it; each of the
        # B beams samples answers 2x + (s2 + k) % 5 (k < B); all B x B compete, sign * answer ranks them
        s1, s2 = (trajectory_seed(7, t.question_id, 0, step) for step in (0, 1))
        answers = [2 * ((s1 + j) % 50) + (s2 + k) % 5 for j in range(width) for k in range(width)]
        best = max(answers) if sign > 0 else min(answers)
        assert t.stop_reason == "answer" and t.final_answer == str(best), (t.final_answer, answers)
        assert len(t.action_spans) == 2 and t.messages[-1]["content"].endswith(f"<answer>{best}</answer>")


def test_evaluate_stage_decodes_with_beam_search_and_records_it(tiny_model_dir, tmp_path, monkeypatch):
    """The evaluate stage with decoding beam: a scripted policy whose answer to 'i + i' is off by seed % 3, so
    greedy decoding (one sample) is often wrong, and a scripted value that prefers the right answer: with
    B = 3 every question has one right candidate among its three (three consecutive seeds)."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.stages.base import Context, run_stage
    from swirl.stages.evaluate import Evaluate
    from tests.unit.test_evaluate import evaluate_job, setup

    def say(prompt, seed):
        i = int(re.search(r"What is (\d+) \+", prompt).group(1))
        if prompt.count("<|im_start|>assistant") == 1:
            return f"<math_exp>{i} + {i}</math_exp>"
        return f"The sum is <answer>{2 * i + seed % 3}</answer>"

    store, spec, qref, cfg, gen, policy, engine, tools = setup(str(tmp_path), tiny_model_dir)
    tok = engine.tokenizer

    def right_answer_value(prefixes):
        out = []
        for ids in prefixes:
            text = tok.decode(ids)
            i = int(re.search(r"What is (\d+) \+", text).group(1))
            out.append(1.0 if f"<answer>{2 * i}</answer>" in text else 0.0)
        return out

    monkeypatch.setattr(Evaluate, "scorer", lambda self, policy: right_answer_value)
    sampled = cfg.model_copy(update={"temperature": 0.7})
    beam = sampled.model_copy(update={"decoding": "beam", "beam_width": 3, "value_model": str(tmp_path)})
    refs = {}
    for name, c in (("sampled", sampled), ("beam", beam)):
        job = evaluate_job(c, gen, policy, spec, qref)
        ctx = Context(engines={"policy": ScriptedEngine(tok, say)}, tools=tools)
        refs[name] = run_stage(store, job, ctx).ref
    assert refs["beam"].version != refs["sampled"].version
    assert "beam" not in evaluate_job(sampled, gen, policy, spec, qref).plan().config["decoding"]
    assert refs["beam"].summary["accuracy_rule"] == 1.0 > refs["sampled"].summary["accuracy_rule"]
    assert refs["beam"].summary["decoding"] == "beam(B=3,sample(t=0.7,p=1))"
    assert {r["decoding"] for r in store.read_ref(refs["beam"]).to_pylist()} == {
        "beam(B=3,sample(t=0.7,p=1))"
    }
