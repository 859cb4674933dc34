"""Protocol parsing and the rollout loop: token-exact trajectories, and garbage never crashes it."""

import re

import pytest

from swirl.engines.scripted import ScriptedEngine
from swirl.protocol import LAST_STEP_WARNING, MATH_PROMPT, SEARCH_PROMPT, parse_action, render_prompt
from swirl.rollout import ChatSegments, RolloutSettings, rollout, start_trajectories


@pytest.mark.parametrize(
    "text, kind, content",
    [
        ("I should search. <search_query>capital of France</search_query>", "search", "capital of France"),
        ("<math_exp> 48 / 2 </math_exp>", "math", "48 / 2"),
        ("So it is <answer>Paris</answer>", "answer", "Paris"),
        ("<search_query>a</search_query><answer>b</answer>", "search", "a"),  # first complete tag wins
        ("no tags at all", "invalid", "no action tag"),
        ("<search_query>never closed", "invalid", "unclosed <search_query> tag"),
        ("<answer>   </answer>", "invalid", "empty <answer> tag"),
        ("<python>print(1)</python>", "invalid", "unknown tag <python>"),
        ("<search_query>x <answer>y</answer></search_query>", "invalid", "two action tags in one message"),
        ("<answer>y <search_query>x</search_query></answer>", "invalid", "two action tags in one message"),
        ("", "invalid", "no action tag"),
    ],
)
def test_parse_action(text, kind, content):
    a = parse_action(text)
    assert (a.kind, a.content) == (kind, content)


def test_thought_is_text_before_action():
    assert parse_action("think first\n<answer>4</answer>").thought == "think first\n"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _prompt(q):
    tmpl = MATH_PROMPT if q["task"] == "math" else SEARCH_PROMPT
    return [{"role": "user", "content": render_prompt(tmpl, q["question"], 5)}]


def _calc(expr):
    return f"{expr} -> 24"


def _run(tok, script, questions, settings=None, samples=1, tools=None):
    eng = ScriptedEngine(tok, script)
    trajs = start_trajectories(questions, samples, _prompt, ChatSegments(tok))
    rollout(
        eng,
        trajs,
        tools or {"math": _calc, "search": lambda q: f"{q} -> nothing found"},
        settings or RolloutSettings(),
    )
    return eng, trajs


def _turns(prompt_text):
    return prompt_text.count("<|im_start|>assistant")


def test_hand_written_trajectory_is_token_exact(tok):
    def script(prompt, seed):
        return "Half of 48. <math_exp>48 / 2</math_exp>" if _turns(prompt) == 1 else "<answer>24</answer>"

    eng, (t,) = _run(tok, script, [{"question_id": "q1", "question": "What is 48 / 2?", "task": "math"}])
    assert t.stop_reason == "answer" and t.final_answer == "24" and len(t.action_spans) == 2
    assert [m["role"] for m in t.messages] == ["user", "assistant", "user", "assistant"]
    assert t.messages[2]["content"] == "48 / 2 -> 24"
    # the action spans hold exactly the generated tokens, in order
    assert [t.token_ids[a:b] for a, b in t.action_spans] == eng.produced
    assert [len(lp) for lp in t.action_logprobs] == [b - a for a, b in t.action_spans]
    # re-rendering the messages gives the same ids: the conversation up to the last action, then that action
    head = tok.apply_chat_template(t.messages[:-1], add_generation_prompt=True, tokenize=False)
    rendered = head + t.messages[-1]["content"]
    assert tok.decode(t.token_ids) == rendered
    assert tok.encode(rendered, add_special_tokens=False) == t.token_ids
    row = t.row("m", None)
    assert row["num_actions"] == 2 and row["action_spans"][0]["start"] == t.action_spans[0][0]


def test_step_synchronous_batching_and_samples(tok):
    qs = [{"question_id": f"q{i}", "question": f"question {i}", "task": "search"} for i in range(4)]

    def script(prompt, seed):  # question i answers after i searches
        i = int(re.search(r"question (\d)", prompt).group(1))
        return (
            "<answer>done</answer>"
            if _turns(prompt) > i
            else f"<search_query>step {_turns(prompt)}</search_query>"
        )

    eng, trajs = _run(tok, script, qs, samples=2)
    assert len(trajs) == 8 and {t.trajectory_id for t in trajs} == {
        f"q{i}#{k}" for i in range(4) for k in range(2)
    }
    assert eng.calls == [8, 6, 4, 2], "one engine call per step for all unfinished trajectories"
    assert sorted(len(t.action_spans) for t in trajs) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert all(t.stop_reason == "answer" for t in trajs)


GARBAGE = {
    "garbage": "\x00\x01 ��� <<<>>> </answer> <answer",
    "no tags": "I think the answer is probably 42 but I am not sure.",
    "unclosed": "<search_query>where is the thing",
    "ten calls": "".join(f"<search_query>q{i}</search_query>" for i in range(10)),
    "endless": "word " * 2000,
    "unknown tag": "<python>import os</python>",
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_never_crashes(tok, case):
    settings = RolloutSettings(max_steps=3, max_tokens_per_step=64, max_context=2048)
    eng, (t,) = _run(
        tok, lambda p, s: GARBAGE[case], [{"question_id": "q", "question": "?", "task": "search"}], settings
    )
    assert t.stop_reason in ("max_steps", "context_limit")
    assert len(t.action_spans) == 3
    kinds = [a.kind for a in t.actions]
    assert kinds == (["search"] * 3 if case == "ten calls" else ["invalid"] * 3)
    if case != "ten calls":
        assert t.messages[2]["content"].startswith("Invalid action")
    assert all(b - a <= 64 for a, b in t.action_spans)
    assert [t.token_ids[a:b] for a, b in t.action_spans] == eng.produced


def test_context_limit_ends_trajectory(tok):
    q = {"question_id": "q", "question": "?", "task": "search"}
    limit = len(ChatSegments(tok).prompt_ids(_prompt(q))) + 22  # room for less than one step's 50 tokens
    settings = RolloutSettings(max_steps=5, max_tokens_per_step=50, max_context=limit)
    _, (t,) = _run(tok, lambda p, s: "word " * 200, [q], settings)
    assert t.stop_reason == "context_limit" and len(t.token_ids) <= limit


def test_tool_errors_become_observations(tok):
    def boom(q):
        raise RuntimeError("index offline")

    def script(p, s):
        return "<search_query>x</search_query>" if _turns(p) == 1 else "<answer>a</answer>"

    _, (t,) = _run(
        tok, script, [{"question_id": "q", "question": "?", "task": "search"}], tools={"search": boom}
    )
    assert t.messages[2]["content"] == "x -> error: RuntimeError: index offline" and t.stop_reason == "answer"
    _, (t,) = _run(
        tok,
        lambda p, s: "<math_exp>1+1</math_exp>",
        [{"question_id": "q", "question": "?", "task": "search"}],
        RolloutSettings(max_steps=2),
        tools={"search": boom},
    )
    assert "no math tool" in t.messages[2]["content"]


@pytest.mark.vllm
def test_vllm_rollout_token_exact(vllm_engine, tok):
    qs = [{"question_id": f"q{i}", "question": f"What is {i} + {i}?", "task": "math"} for i in range(6)]
    trajs = start_trajectories(qs, 2, _prompt, ChatSegments(vllm_engine.tokenizer))
    rollout(
        vllm_engine,
        trajs,
        {"math": _calc},
        RolloutSettings(max_steps=3, max_tokens_per_step=32, max_context=1024),
    )
    # The random model's text rarely re-encodes to its own ids (stray bytes, special tokens mid-message), so
    # the check here is structural; test_hand_written_trajectory_is_token_exact checks full re-rendering.
    for t in trajs:
        assert t.stop_reason in ("answer", "max_steps", "context_limit")
        for (a, b), lp, msg in zip(t.action_spans, t.action_logprobs, t.messages[1::2], strict=False):
            assert len(lp) == b - a and all(x <= 0 for x in lp)
            assert tok.decode(t.token_ids[a:b], skip_special_tokens=True) == msg["content"]
        # the prompt and every template/observation piece is the canonical encoding of its text
        assert t.token_ids[: t.action_spans[0][0]] == tok.encode(
            tok.apply_chat_template(t.messages[:1], add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )
        seg = ChatSegments(tok)
        for (_a, b), (c, _), obs in zip(t.action_spans, t.action_spans[1:], t.messages[2::2], strict=False):
            ended_eos = t.token_ids[b - 1] == tok.eos_token_id
            # template + observation, exact
            assert t.token_ids[b:c] == seg.between_ids(obs["content"], ended_eos)
        # ends with the last action (no dangling observation)
        assert t.action_spans[-1][1] == len(t.token_ids)
    assert len(trajs) == 12


# ------------------------------------------------------------------- the step limit: prompt and loop agree


def _searcher_until_warned(prompt, seed):
    """Searches until the last-step warning, then answers."""
    if LAST_STEP_WARNING in prompt:
        return "<answer>done</answer>"
    return f"<search_query>query {_turns(prompt)}</search_query>"


@pytest.mark.parametrize("max_steps", [1, 2, 3, 5])
def test_last_step_warning_then_answer_uses_every_step(tok, max_steps):
    settings = RolloutSettings(max_steps=max_steps, max_context=8192)
    _, (t,) = _run(
        tok, _searcher_until_warned, [{"question_id": "q", "question": "?", "task": "search"}], settings
    )
    warned = [i for i, m in enumerate(t.messages) if LAST_STEP_WARNING in m["content"]]
    if max_steps == 1:  # no observation at all, so no warning: the one action is a search
        assert warned == [] and t.stop_reason == "max_steps" and len(t.action_spans) == 1
        return
    assert t.stop_reason == "answer" and t.final_answer == "done" and len(t.action_spans) == max_steps
    assert [a.kind for a in t.actions] == ["search"] * (max_steps - 1) + ["answer"]
    # exactly once, in the observation right before the last action, at its end
    assert warned == [len(t.messages) - 2] and t.messages[-2]["role"] == "user"
    assert t.messages[-2]["content"].endswith(LAST_STEP_WARNING)


def test_warning_on_corrective_observations_too(tok):
    _, (t,) = _run(
        tok,
        lambda p, s: "no tags",
        [{"question_id": "q", "question": "?", "task": "math"}],
        RolloutSettings(max_steps=3),
    )
    obs = [m["content"] for m in t.messages if m["role"] == "user"][1:]
    assert len(obs) == 2 and LAST_STEP_WARNING not in obs[0]
    assert obs[1].startswith("Invalid action") and obs[1].endswith(LAST_STEP_WARNING)


@pytest.mark.parametrize("template, tool", [(SEARCH_PROMPT, "search"), (MATH_PROMPT, "math")])
def test_prompt_states_the_queries_the_loop_allows(tok, template, tool):
    text = render_prompt(template, "?", 5)
    word = "queries" if tool == "search" else "calculations"
    m = re.search(rf"up to (\d+) (?:sequential )?{word} before answering", text)
    assert m and "You have 5 steps" in text, text
    promised = int(m.group(1))
    assert promised == 4
    tag = "search_query" if tool == "search" else "math_exp"

    def script(prompt, seed):  # uses every promised query, then answers
        return "<answer>x</answer>" if _turns(prompt) > promised else f"<{tag}>{_turns(prompt)}</{tag}>"

    _, (t,) = _run(
        tok,
        script,
        [{"question_id": "q", "question": "?", "task": tool}],
        RolloutSettings(max_steps=5, max_context=8192),
    )
    assert t.stop_reason == "answer" and [a.kind for a in t.actions] == [tool] * promised + ["answer"]
    # one more query than promised leaves no step to answer in
    _, (t,) = _run(
        tok,
        lambda p, s: "<answer>x</answer>" if _turns(p) > promised + 1 else f"<{tag}>{_turns(p)}</{tag}>",
        [{"question_id": "q", "question": "?", "task": tool}],
        RolloutSettings(max_steps=5, max_context=8192),
    )
    assert t.stop_reason == "max_steps" and not t.final_answer


def test_render_prompt_fills_max_queries():
    assert (
        render_prompt("{question}: {max_steps} steps, {max_queries} queries", "Q", 5)
        == "Q: 5 steps, 4 queries"
    )
    # templates without {max_queries} still work
    assert render_prompt("{question} {max_steps}", "Q", 1) == "Q 1"


def test_worked_example_turns_are_seen_but_not_stored(tok):
    """A worked example given as chat turns precedes the prompt in the token ids (the model sees it) but not
    in the stored conversation, so action counts and judges see only the episode."""
    example = [
        {"role": "user", "content": "What is 6 * 7?"},
        {"role": "assistant", "content": "<math_exp>6 * 7</math_exp>"},
        {"role": "user", "content": "6 * 7 -> 42"},
        {"role": "assistant", "content": "<answer>42</answer>"},
    ]
    seen = []

    def script(prompt, seed):
        seen.append(prompt)
        return "<math_exp>48 / 2</math_exp>" if _turns(prompt) == 3 else "<answer>24</answer>"

    eng = ScriptedEngine(tok, script)
    q = {"question_id": "q1", "question": "What is 48 / 2?", "task": "math"}
    (t,) = start_trajectories([q], 1, _prompt, ChatSegments(tok), context=example)
    rollout(eng, [t], {"math": _calc}, RolloutSettings())
    # the example comes first
    assert "6 * 7 -> 42" in seen[0] and seen[0].index("6 * 7") < seen[0].index("48 / 2")
    assert [m["role"] for m in t.messages] == ["user", "assistant", "user", "assistant"]  # the episode only
    assert t.messages[0]["content"].endswith("What is 48 / 2?") and t.stop_reason == "answer"
    full = tok.apply_chat_template(example + t.messages[:1], add_generation_prompt=True, tokenize=False)
    # token-exact prefix
    assert t.token_ids[: t.action_spans[0][0]] == tok.encode(full, add_special_tokens=False)


def test_a_text_only_engine_is_sent_the_conversation_not_token_ids(tok):
    """`token_exact` False (an HTTP chat API): each step's prompt is the chat so far, worked example first."""

    class TextOnly(ScriptedEngine):
        token_exact = False

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.prompts = []

        def generate(self, prompts, sampling, adapter=None, seeds=None):
            self.prompts += [list(p) for p in prompts]
            return super().generate(prompts, sampling, adapter, seeds)

    steps = iter(["<math_exp>48 / 2</math_exp>", "<answer>24</answer>"])
    eng = TextOnly(tok, lambda prompt, seed: next(steps))
    example = [{"role": "user", "content": "Ex?"}, {"role": "assistant", "content": "<answer>1</answer>"}]
    q = {"question_id": "q1", "question": "What is 48 / 2?", "task": "math"}
    (t,) = start_trajectories([q], 1, _prompt, ChatSegments(tok), context=example)
    rollout(eng, [t], {"math": _calc}, RolloutSettings())
    assert t.final_answer == "24"
    assert eng.prompts == [example + t.messages[:1], example + t.messages[:3]]
