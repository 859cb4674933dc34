"""The rule-based process judge: labels for hand-written steps, the judge stage without a model, the
reward."""

from __future__ import annotations

import pytest

from swirl.judging.config import JudgeConfig, ProcessJudgeConfig
from swirl.judging.rules import rule_process_label
from swirl.protocol import LAST_STEP_WARNING

Q_MATH = "A crate holds 36 jars. A shop orders 47 crates and sells 1200 jars. How many jars are left?"
PROMPT = [{"role": "user", "content": f"Help me answer.\n\nQuestion: {Q_MATH}"}]


def _after(*turns: str) -> list[dict[str, str]]:
    """The prompt, then alternating (action, observation) turns."""
    msgs = list(PROMPT)
    for i, t in enumerate(turns):
        msgs.append({"role": "assistant" if i % 2 == 0 else "user", "content": t})
    return msgs


@pytest.mark.parametrize(
    "context,action,label",
    [
        ((), "First the total. <math_exp>36 * 47</math_exp>", "GOOD"),  # numbers of the question
        ((), "<math_exp>36 * 48</math_exp>", "BAD"),  # 48 is made up
        ((), "<math_exp>36 * </math_exp>", "BAD"),  # the calculator rejects it
        # an earlier result
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<math_exp>1692 - 1200</math_exp>", "GOOD"),
        # repeated
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<math_exp>36*47</math_exp>", "BAD"),
        (
            (
                "<math_exp>36 * 47</math_exp>",
                "36 * 47 -> 1692",
                "<math_exp>1692 - 1200</math_exp>",
                "1692 - 1200 -> 492",
            ),
            "<answer>492</answer>",
            "GOOD",
        ),
        # 36, 47 unused
        (("<math_exp>1692 - 1200</math_exp>", "1692 - 1200 -> 492"), "<answer>492</answer>", "BAD"),
        # 1200 never used
        (("<math_exp>36 * 47</math_exp>", "36 * 47 -> 1692"), "<answer>1692</answer>", "BAD"),
        (
            ("<math_exp>1692 - 1200</math_exp>", "1692 - 1200 -> 492"),
            "<answer>The answer is 500</answer>",
            "BAD",
        ),
        ((), "<answer>1200</answer>", "BAD"),  # no calculation: the problem's other numbers are unused
        ((), "<answer>I think about 1700</answer>", "BAD"),
        ((), "I will think about it.", "BAD"),  # no action tag
        # the warning is no result
        (
            (
                "<math_exp>36 * 47</math_exp>",
                "36 * 47 -> 1692",
                "<math_exp>1692 - 1200</math_exp>",
                "1692 - 1200 -> 492\n\n" + LAST_STEP_WARNING,
            ),
            "<answer>492</answer>",
            "GOOD",
        ),
    ],
)
def test_math_steps(context, action, label):
    got, reason = rule_process_label(_after(*context), Q_MATH, action, math=True)
    assert got == label, reason


Q_QA = "In which country was the founder of Velmora Labs born?"


@pytest.mark.parametrize(
    "context,action,label",
    [
        ((), "<search_query>Velmora Labs founder</search_query>", "GOOD"),
        ((), "<search_query>weather today</search_query>", "BAD"),  # nothing of the question
        # a word of an earlier result
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
            ),
            "<search_query>Kira Ostvan</search_query>",
            "GOOD",
        ),
        # the same query again
        (
            (
                "<search_query>Velmora Labs</search_query>",
                "Velmora Labs -> Velmora Labs: founded by Kira Ostvan.",
            ),
            "<search_query>velmora labs</search_query>",
            "BAD",
        ),
        (
            (
                "<search_query>Kira Ostvan</search_query>",
                "Kira Ostvan -> Kira Ostvan: born in Dunport, Zelmar.",
            ),
            "<answer>Zelmar</answer>",
            "GOOD",
        ),
        # whole words only
        (
            (
                "<search_query>Kira Ostvan</search_query>",
                "Kira Ostvan -> Kira Ostvan: born in Dunport, Zelmaria.",
            ),
            "<answer>Zelmar</answer>",
            "BAD",
        ),
        ((), "<answer>France</answer>", "BAD"),  # nothing supports it yet
    ],
)
def test_search_steps(context, action, label):
    msgs = [{"role": "user", "content": f"Question: {Q_QA}"}]
    for i, t in enumerate(context):
        msgs.append({"role": "assistant" if i % 2 == 0 else "user", "content": t})
    got, reason = rule_process_label(msgs, Q_QA, action, math=False)
    assert got == label, reason


def test_judge_stage_needs_no_model_with_the_rule_judge(tmp_path):
    from swirl.judging.process import Question, judge_shard

    cfg = JudgeConfig(process=ProcessJudgeConfig(kind="rule"))
    assert not cfg.needs_model and cfg.version_config()["engine"] == {"kind": "rule"}
    row = {
        "trajectory_id": "t#0",
        "question_id": "q",
        "final_answer": "492",
        "num_actions": 3,
        "messages": _after(
            "<math_exp>36 * 47</math_exp>",
            "36 * 47 -> 1692",
            "<math_exp>1692 - 1200</math_exp>",
            "1692 - 1200 -> 492",
            "<answer>492</answer>",
        ),
    }
    rows = judge_shard([row], {"q": Question("gsm8k", Q_MATH, ("492",))}, None, cfg)
    assert [r["process_label"] for r in rows] == ["GOOD", "GOOD", "GOOD"]
    assert all(r["judge_model"] == "rule" and r["judge_text"].startswith("[rule] ") for r in rows)
    assert rows[0]["outcome_correct"] is True


def test_rule_reward_scores_sampled_actions():
    from swirl.engines.base import Completion
    from swirl.training.data import State
    from swirl.training.rewards import rule_process_reward

    reward = rule_process_reward(
        JudgeConfig(process=ProcessJudgeConfig(kind="rule")), {"GOOD": 1.0, "BAD": -0.5}
    )
    import numpy as np

    s = State("t#0/0", np.zeros(1, np.int32), Q_MATH, "gsm8k", PROMPT)
    acts = [
        Completion([], "<math_exp>36 * 47</math_exp>", "stop"),
        Completion([], "<math_exp>2 + 2</math_exp>", "stop"),
    ]
    assert reward.score([s, s], acts) == [1.0, -0.5]


def test_gold_solutions_of_the_toy_world_are_good_and_one_step_shortcuts_bad():
    """Every step of every gold solution (the `<<expr=value>>` notes of the toy arithmetic world, replayed as
    protocol turns) is GOOD; answering after the first calculation only is BAD."""
    import re

    from swirl.data.toyworld import arithmetic_records

    for rec in arithmetic_records(60, seed=3, split="train"):
        notes = re.findall(r"<<([^=]+)=([^>]+)>>", rec["answer"])
        msgs = [{"role": "user", "content": f"Question: {rec['question']}"}]
        for expr, value in notes:
            label, reason = rule_process_label(
                msgs, rec["question"], f"<math_exp>{expr}</math_exp>", math=True
            )
            assert label == "GOOD", (rec["question"], expr, reason)
            msgs += [
                {"role": "assistant", "content": f"<math_exp>{expr}</math_exp>"},
                {"role": "user", "content": f"{expr} -> {value}"},
            ]
        final = rec["answer"].split("####")[1].strip()
        label, reason = rule_process_label(msgs, rec["question"], f"<answer>{final}</answer>", math=True)
        assert label == "GOOD", (rec["question"], reason)
        short = msgs[:3]  # the first calculation only, then its result as the answer
        label, _ = rule_process_label(short, rec["question"], f"<answer>{notes[0][1]}</answer>", math=True)
        assert label == "BAD", rec["question"]
