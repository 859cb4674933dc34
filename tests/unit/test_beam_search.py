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


def test_control_decodings_need_no_value_model():
    for decoding in ("best_of_logprob", "beam_random"):
        cfg = EvaluateConfig(decoding=decoding, temperature=0.7, beam_width=3)
        assert cfg.decoding_label == f"{decoding}(B=3,sample(t=0.7,p=1))" and cfg.ranker != "value"
        with pytest.raises(ValueError, match="evaluate.temperature: beam decoding"):
            EvaluateConfig(decoding=decoding, beam_width=3)
    assert EvaluateConfig(decoding="beam", value_model="v", temperature=0.7).ranker == "value"
    assert EvaluateConfig().ranker is None


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


def _search(engine, starts, settings, score, width):
    """Beam search ranked by the scripted value `score` (token ids -> values)."""
    from swirl.evaluation.beam import beam_search, value_ranker

    return beam_search(engine, starts, {"math": _double}, settings, value_ranker(score), width)


def _logged(script, log):
    """`script`, recording (question, step, seed, text) of every sample it gives."""

    def say(prompt, seed):
        text = script(prompt, seed)
        q = re.search(r"number \((\d+)\)", prompt).group(1)
        log.append((q, prompt.count("<|im_start|>assistant") - 1, seed, text))
        return text

    return say


def test_every_expansion_of_a_question_gets_its_own_seed(tok):
    """B beams x B children: B^2 distinct seeds at a step (not the same B seeds for every beam), the same
    ones on every run."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.rollout import RolloutSettings

    width, settings = 3, RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    logs = [], []
    for log in logs:
        _search(ScriptedEngine(tok, _logged(_script, log)), _starts(tok), settings, _answer_value(tok), width)
    assert logs[0] == logs[1]  # deterministic for a question
    for q in ("0", "1"):
        seeds = [seed for qq, step, seed, _ in logs[0] if (qq, step) == (q, 1)]
        parents = {text for qq, step, _, text in logs[0] if (qq, step) == (q, 0)}
        assert len(seeds) == width * len(parents)
        assert len(set(seeds)) == len(seeds), seeds


def test_identical_candidates_take_one_beam_slot(tok):
    """Every sample of the first step is the same action: the beam holds it once, so the second step samples
    B children of one parent, and the value never ranks two copies of one sequence."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.rollout import RolloutSettings

    def same_first_step(prompt, seed):
        if prompt.count("<|im_start|>assistant") == 1:
            return "Double it. <math_exp>3 * 2</math_exp>"
        return f"So <answer>{6 + seed % 1000}</answer>"

    width, log, ranked = 3, [], []
    value = _answer_value(tok)

    def score(prefixes):
        ranked.append([tuple(p) for p in prefixes])
        return value(prefixes)

    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    got = _search(ScriptedEngine(tok, _logged(same_first_step, log)), _starts(tok), settings, score, width)
    for call in ranked:
        assert len(set(call)) == len(call), "the value ranked copies of one candidate"
    for q, t in zip(("0", "1"), got, strict=True):
        answers = [
            int(re.search(r"<answer>(\d+)", text).group(1))
            for qq, step, _, text in log
            if qq == q and step == 1
        ]
        assert len(answers) == width  # B children of the one distinct parent
        assert t.final_answer == str(max(answers))


def test_answered_candidates_leave_the_beam(tok):
    """Answers found at the second step (valued 10-59) outrank the unfinished candidates (valued 2) but
    leave the beam: the unfinished ones go on and answer at the third step (valued 1000+), the best
    answer."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.rollout import RolloutSettings

    def answer_or_go_on(prompt, seed):
        turn = prompt.count("<|im_start|>assistant")
        if turn == 1:
            return f"Double it. <math_exp>{seed % 1000} * 2</math_exp>"
        if turn == 2 and seed % 2 == 0:
            return f"So <answer>{10 + seed % 50}</answer>"
        if turn == 2:
            return "Once more. <math_exp>1 * 2</math_exp>"
        return f"So <answer>{1000 + seed % 50}</answer>"

    width, log = 2, []
    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=2)
    got = _search(
        ScriptedEngine(tok, _logged(answer_or_go_on, log)), _starts(tok), settings, _answer_value(tok), width
    )
    for q, t in zip(("0", "1"), got, strict=True):
        second = [text for qq, step, _, text in log if qq == q and step == 1]
        answered = sum("<answer>" in text for text in second)
        assert answered >= width and answered < len(second), second  # the case this test is about
        assert t.stop_reason == "answer" and int(t.final_answer) >= 1000, (t.final_answer, second)
        assert len(t.action_spans) == 3


def test_beam_width_one_is_greedy_decoding(tok):
    from swirl.engines.scripted import ScriptedEngine
    from swirl.rollout import RolloutSettings, rollout

    settings = RolloutSettings(max_steps=3, temperature=0.0, seed=4)
    greedy = rollout(ScriptedEngine(tok, _script), _starts(tok), {"math": _double}, settings)
    calls = []

    def scorer(prefixes):
        calls.append(len(prefixes))
        return [0.0] * len(prefixes)

    beam = _search(ScriptedEngine(tok, _script), _starts(tok), settings, scorer, 1)
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
    from swirl.rollout import RolloutSettings

    width, log = 3, []
    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    value = _answer_value(tok)
    got = _search(
        ScriptedEngine(tok, _logged(_script, log)),
        _starts(tok),
        settings,
        lambda ps: [sign * v for v in value(ps)],
        width,
    )
    for q, t in zip(("0", "1"), got, strict=True):
        # step 1 samples B tool calls, step 2 B answers for each: every answer is finished, the one that
        # sign * answer ranks first is the search's answer
        answers = [
            int(re.search(r"<answer>(\d+)", x).group(1)) for qq, step, _, x in log if (qq, step) == (q, 1)
        ]
        assert len(answers) > width
        best = max(answers) if sign > 0 else min(answers)
        assert t.stop_reason == "answer" and t.final_answer == str(best), (t.final_answer, answers)
        assert len(t.action_spans) == 2 and t.messages[-1]["content"].endswith(f"<answer>{best}</answer>")


def _distinct(prompt, seed):
    """Samples that differ with every seed: a tool call, then an answer with a seed-long filler."""
    if prompt.count("<|im_start|>assistant") == 1:
        return f"Double it. <math_exp>{seed % 100_000} * 2</math_exp>"
    return f"So{' hmm' * (seed % 7)} <answer>{seed % 100_000}</answer>"


def _spy(ranker, seen):
    """`ranker`, recording every (candidate, score) it gives."""

    def rank(cands):
        scores = ranker(cands)
        seen.extend(zip(cands, scores, strict=True))
        return scores

    return rank


def test_logprob_ranker_picks_the_highest_cumulative_logprob(tok):
    """Best-of-B by the policy's log-prob: the scripted engine gives every token log-prob -1, so the episode
    with the fewest action tokens (both actions counted) is the answer."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.evaluation.beam import beam_search, logprob_ranker
    from swirl.rollout import RolloutSettings

    width, seen = 3, []
    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    engine = ScriptedEngine(tok, _distinct)
    got = beam_search(
        engine, _starts(tok, 3), {"math": _double}, settings, _spy(logprob_ranker(), seen), width
    )
    for t in got:
        answered = {id(c): v for c, v in seen if c.question_id == t.question_id and c.stop_reason == "answer"}
        assert len(answered) == width * width and len(set(answered.values())) > 1
        tokens = sum(end - start for start, end in t.action_spans)
        assert len(t.action_spans) == 2 and answered[id(t)] == -tokens == max(answered.values())
        assert logprob_ranker()([t]) == [sum(sum(lps) for lps in t.action_logprobs)] == [-tokens]


def test_random_ranker_is_seeded_and_deterministic(tok):
    from swirl.engines.scripted import ScriptedEngine
    from swirl.evaluation.beam import beam_search, random_ranker
    from swirl.rollout import RolloutSettings

    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)

    def pick(seed):
        engine = ScriptedEngine(tok, _distinct)
        got = beam_search(engine, _starts(tok, 6), {"math": _double}, settings, random_ranker(seed), 3)
        return [(t.final_answer, tuple(t.token_ids)) for t in got]

    assert pick(5) == pick(5)
    assert pick(5) != pick(6)  # another seed, other picks
    cands = beam_search(
        ScriptedEngine(tok, _distinct), _starts(tok, 2), {"math": _double}, settings, random_ranker(5), 1
    )
    scores = random_ranker(5)(cands)
    assert random_ranker(5)(cands[::-1]) == scores[::-1] and all(0 <= v < 1 for v in scores)


def test_value_and_control_rankers_draw_the_same_samples(tok):
    """At equal width every ranker samples B steps per kept partial episode: B + B * B per question here."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.evaluation.beam import beam_search, logprob_ranker, random_ranker, value_ranker
    from swirl.rollout import RolloutSettings

    width = 3
    settings = RolloutSettings(max_steps=3, temperature=1.0, seed=7)
    drawn = {}
    for name, ranker in (
        ("value", value_ranker(_answer_value(tok))),
        ("logprob", logprob_ranker()),
        ("random", random_ranker(0)),
    ):
        engine, samples = ScriptedEngine(tok, _distinct), []
        beam_search(engine, _starts(tok, 3), {"math": _double}, settings, ranker, width, samples=samples)
        assert len(engine.produced) == sum(samples)
        drawn[name] = samples
    assert drawn["value"] == drawn["logprob"] == drawn["random"] == [width + width * width] * 3


def test_evaluate_stage_decodes_with_beam_search_and_records_it(tiny_model_dir, tmp_path, monkeypatch):
    """The evaluate stage with decoding beam and its controls: a scripted policy whose answer to 'i + i' is
    off by seed % 3, so one sample is often wrong, and a scripted value that prefers the right answer: beam
    search answers right exactly where one of its B samples is right (the first is the plain rollout's)."""
    from swirl.engines.scripted import ScriptedEngine
    from swirl.stages.base import Context, run_stage
    from swirl.stages.evaluate import Evaluate
    from tests.unit.test_evaluate import evaluate_job, setup

    sampled_right: dict[int, bool] = {}  # question i -> whether a sampled answer was right

    def say(prompt, seed):
        i = int(re.search(r"What is (\d+) \+", prompt).group(1))
        if prompt.count("<|im_start|>assistant") == 1:
            return f"<math_exp>{i} + {i}</math_exp>"
        sampled_right[i] = sampled_right.get(i, False) or seed % 3 == 0
        return f"The sum is <answer>{2 * i + seed % 3}</answer>"

    store, spec, qref, cfg, gen, policy, engine, tools = setup(str(tmp_path), tiny_model_dir)
    tok = engine.tokenizer
    valued = []

    def right_answer_value(prefixes):
        valued.append(len(prefixes))
        out = []
        for ids in prefixes:
            text = tok.decode(ids)
            i = int(re.search(r"What is (\d+) \+", text).group(1))
            out.append(1.0 if f"<answer>{2 * i}</answer>" in text else 0.0)
        return out

    monkeypatch.setattr(Evaluate, "scorer", lambda self, policy: right_answer_value)
    sampled = cfg.model_copy(update={"temperature": 0.7})
    beam = sampled.model_copy(update={"decoding": "beam", "beam_width": 3, "value_model": str(tmp_path)})
    refs, rights = {}, {}
    for name, c in (
        ("sampled", sampled),
        ("beam", beam),
        ("best_of_logprob", beam.model_copy(update={"decoding": "best_of_logprob"})),
        ("beam_random", beam.model_copy(update={"decoding": "beam_random", "value_model": None})),
    ):
        sampled_right.clear()
        valued.clear()
        job = evaluate_job(c, gen, policy, spec, qref)
        ctx = Context(engines={"policy": ScriptedEngine(tok, say)}, tools=tools)
        refs[name] = run_stage(store, job, ctx).ref
        rights[name] = sum(sampled_right.values()) / len(sampled_right)
        assert bool(valued) == (name == "beam")  # only beam decoding asks the value model
    assert len({r.version for r in refs.values()}) == 4
    assert "beam" not in evaluate_job(sampled, gen, policy, spec, qref).plan().config["decoding"]
    for name in ("best_of_logprob", "beam_random"):  # the controls' versions do not depend on a value model
        other = beam.model_copy(update={"decoding": name, "value_model": str(tmp_path / "other")})
        assert evaluate_job(other, gen, policy, spec, qref).plan().version == refs[name].version
    assert refs["beam"].summary["accuracy_rule"] == rights["beam"] > refs["sampled"].summary["accuracy_rule"]
    for name in ("beam", "best_of_logprob", "beam_random"):
        label = f"{name}(B=3,sample(t=0.7,p=1))"
        assert refs[name].summary["decoding"] == label
        assert {r["decoding"] for r in store.read_ref(refs[name]).to_pylist()} == {label}
