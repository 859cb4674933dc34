"""The process judge and the judge stage: prompts, verdict parsing, re-asks, UNKNOWN, shards, resume,
faults."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from swirl.engines.base import Completion, Result
from swirl.engines.config import EngineConfig, OpenAIEngineConfig
from swirl.engines.openai import OpenAIEngineError
from swirl.judging.config import JudgeConfig, ProcessJudgeConfig
from swirl.judging.process import REASK_SEPARATOR, TOO_LONG, UNKNOWN, Question, judge_shard
from swirl.judging.prompts import GOOD_BAD, PROCESS_MATH, PROCESS_SEARCH, parse_verdict, render_conversation
from swirl.stages.base import Context, run_stage
from swirl.stages.judge import Judge
from swirl.store import StageRef, Store
from swirl.tables import to_table
from tests.unit.test_openai_engine import ChatServer
from tests.unit.test_subtrajectories import question, traj

# The identity of the scripted judge engines below: a judge that asks a model names its engine in the config.
SCRIPTED = EngineConfig(kind="hf", model="scripted-judge")


def judge_version(trajectories, questions, cfg: JudgeConfig) -> str:
    return Judge(trajectories, questions, cfg).plan().version


def run_judge(store: Store, trajectories, questions, cfg: JudgeConfig, engine=None) -> StageRef:
    """The judge stage with the caller's engine, or (engine None) one built from cfg.engine and closed."""
    ctx = None if engine is None else Context(engines={"judge": engine})
    return run_stage(store, Judge(trajectories, questions, cfg), ctx).ref


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "reply,verdict",
    [
        ("The query targets the missing fact.\nGOOD", "GOOD"),
        ("The answer is not supported by the results.\n\n**BAD**", "BAD"),
        ("Verdict: Good.", "GOOD"),
        ("This is a good query but the answer is wrong. Final: BAD", "BAD"),  # lower-case words never decide
        ("I must say GOOD or BAD. The query repeats an earlier one, so BAD", "BAD"),  # the echo is ignored
        ("It is not bad, it is good", None),  # both words, no capitals: no clear verdict
        ("Hmm, hard to say.", None),
        ("", None),
        ("GOOD\nActually no, it was a bad idea; BAD", "BAD"),
        ("GOODNESS me", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply, GOOD_BAD) == verdict


def test_templates_are_validated_with_the_field_named():
    with pytest.raises(
        ValidationError, match=r"judge.process.search_template: missing placeholders \['\{last_message\}'\]"
    ):
        ProcessJudgeConfig(search_template="Judge {conversation}")
    with pytest.raises(ValidationError, match=r"unknown placeholders \['\{history\}'\]"):
        ProcessJudgeConfig(math_template="{conversation} {last_message} {history}")
    with pytest.raises(ValidationError, match="literal braces"):
        JudgeConfig(reask_template="Reply {choices} as {}")
    ok = ProcessJudgeConfig(search_template='JSON {{"x": 1}} {conversation} / {last_message}')
    assert "{last_message}" in ok.search_template


def test_paper_prompt_paraphrases():
    for t in (PROCESS_SEARCH, PROCESS_MATH):
        assert "Judge only my last message" in t and "GOOD or BAD" in t
    assert "not whether you believe it is true" in PROCESS_SEARCH and "rate the answer BAD" in PROCESS_SEARCH
    assert "likely to help answer the question" in PROCESS_SEARCH and "calculator" in PROCESS_MATH


def test_judge_engine_configs_and_version_identity():
    oa = JudgeConfig.model_validate(
        {"engine": {"kind": "openai", "base_url": "http://a/v1", "model": "judge-1"}}
    )
    assert isinstance(oa.engine, OpenAIEngineConfig)
    with pytest.raises(ValidationError, match="base_url"):
        JudgeConfig.model_validate({"engine": {"kind": "openai", "model": "m"}})
    local = JudgeConfig.model_validate({"engine": {"kind": "hf", "model": "/models/tiny"}})
    assert isinstance(local.engine, EngineConfig)
    assert isinstance(
        JudgeConfig.model_validate({"engine": oa.engine.model_dump()}).engine, OpenAIEngineConfig
    )
    store = Store("memory://swirl-judge-version")
    t = store.write_table("generate", "g", to_table("trajectories", []), "trajectories", {})
    q = store.write_table("ingest", "q", to_table("questions", []), "questions", {})
    elsewhere = JudgeConfig.model_validate(
        {
            "engine": {
                "kind": "openai",
                "base_url": "http://b:9/v1",
                "model": "judge-1",
                "concurrency": 64,
                "timeout_s": 5,
            },
            "shard_size": 7,
        }
    )
    # where/how fast it is served is not identity
    assert judge_version(t, q, oa) == judge_version(t, q, elsewhere)
    other_model = JudgeConfig.model_validate(
        {"engine": {"kind": "openai", "base_url": "http://a/v1", "model": "j2"}}
    )
    assert judge_version(t, q, oa) != judge_version(t, q, other_model)
    assert judge_version(t, q, oa) != judge_version(t, q, oa.model_copy(update={"max_reasks": 1}))
    assert judge_version(t, q, local) != judge_version(
        t, q, local.model_copy(update={"engine": local.engine.model_copy(update={"dtype": "bfloat16"})})
    )
    with pytest.raises(ValueError, match="judge.engine is empty"):
        judge_version(t, q, JudgeConfig())
    assert judge_version(t, q, JudgeConfig(engine=SCRIPTED)) != judge_version(t, q, oa)
    # a rule judge asks no model: it needs no engine, and one named in its config is not its identity
    rule = JudgeConfig(process=ProcessJudgeConfig(kind="rule"))
    assert judge_version(t, q, rule) == judge_version(t, q, rule.model_copy(update={"engine": oa.engine}))
    assert judge_version(t, q, rule) != judge_version(t, q, JudgeConfig(engine=SCRIPTED))


def test_conversation_rendering_labels_prompt_actions_and_results():
    msgs = traj("t", "q", ["<search_query>a</search_query>", "<answer>b</answer>"])["messages"]
    text = render_conversation(msgs[:4])
    assert "You answer with tools" not in text  # the system message is hidden by default
    assert (
        text.index("[User]\nQuestion q?")
        < text.index("[Me]\n<search_query>a")
        < text.index("[Result]\nquery0")
    )
    assert "You answer with tools" in render_conversation(msgs[:2], show_system=True)


# ---------------------------------------------------------------------------------- scripted engine
def last_message(prompt: str) -> str:
    return prompt.split("My last message:\n", 1)[1].split("\n\nJudge only", 1)[0]


def scripted_reply(messages: list[dict]) -> str:
    """A judge that reads markers in the action: [good], [bad], [mumble] (never decides), [mumble-once]."""
    first = messages[0]["content"]
    reasked = len(messages) > 1
    if "The answer key says" in first:
        key = re.search(r"The answer key says: (.*)", first).group(1)
        pred = re.search(r"My answer is: (.*)", first).group(1)
        if "mumble" in pred:
            return "It depends."
        return "Checking the key.\nYES" if key == pred else "They differ.\nNO"
    last = last_message(first)
    if "[mumble-once]" in last:
        return "On reflection:\nGOOD" if reasked else "Let me think about this step..."
    if "[mumble]" in last:
        return "I am not sure."
    return "Reasoning.\nBAD" if "[bad]" in last else "Reasoning.\nGOOD"


class ScriptedEngine:
    name = "scripted"
    model = "scripted-judge"
    tokenizer = None

    def __init__(self, reply: Callable[[list[dict]], str] = scripted_reply, crash_on_call: int | None = None):
        self.reply, self.crash_on_call = reply, crash_on_call
        self.calls: list[list[list[dict]]] = []
        self.closed = False

    def generate(self, prompts, sampling, adapter=None):
        self.calls.append([list(p) for p in prompts])
        if self.crash_on_call is not None and len(self.calls) == self.crash_on_call:
            raise RuntimeError("judge engine crashed")
        return [Result([], [Completion([], self.reply(list(p)), "stop")]) for p in prompts]

    def close(self) -> None:
        self.closed = True


QUESTIONS = {
    "q1": Question("hotpotqa", "Who?", ("Paris", "Paris, France")),
    "q2": Question("gsm8k", "How many?", ("1600",)),
}


def test_judge_shard_labels_each_step_given_its_context():
    rows = [
        traj(
            "t1",
            "q1",
            [
                "<search_query>a [good]</search_query>",
                "<search_query>b [bad]</search_query>",
                "<answer>Paris [good]</answer>",
            ],
            final="Paris",
        ),
        traj(
            "t2",
            "q2",
            ["<math_exp>800*2 [good]</math_exp>", "<answer>$1,600 [good]</answer>"],
            final="$1,600",
        ),
    ]
    eng = ScriptedEngine()
    out = judge_shard(rows, QUESTIONS, eng, JudgeConfig())
    assert [(r["trajectory_id"], r["step"], r["process_label"]) for r in out] == [
        ("t1", 0, "GOOD"),
        ("t1", 1, "BAD"),
        ("t1", 2, "GOOD"),
        ("t2", 0, "GOOD"),
        ("t2", 1, "GOOD"),
    ]
    assert len(eng.calls) == 1 and len(eng.calls[0]) == 5  # every step of the shard in one batch
    prompts = [p[0]["content"] for p in eng.calls[0]]
    assert last_message(prompts[1]) == "<search_query>b [bad]</search_query>"
    assert "<search_query>a [good]" in prompts[1] and "b [bad]" not in prompts[1].split("My last message:")[0]
    assert "Paris [good]" not in prompts[1]  # later steps are never shown
    assert "search engine" in prompts[0] and "calculator" in prompts[3]  # variant by dataset
    assert [r["outcome_correct"] for r in out] == [True] * 5  # "Paris" is the key; "$1,600" equals 1600
    assert all(r["outcome_llm"] is None and r["outcome_llm_text"] == "" for r in out)
    assert out[0]["judge_text"] == "Reasoning.\nGOOD" and out[0]["judge_model"] == "scripted-judge"


def test_unparseable_replies_are_reasked_then_unknown_never_good():
    rows = [
        traj(
            "t1",
            "q1",
            [
                "<search_query>x [mumble-once]</search_query>",
                "<search_query>y [mumble]</search_query>",
                "<answer>z [good]</answer>",
            ],
            final="z",
        )
    ]
    eng = ScriptedEngine()
    out = judge_shard(rows, QUESTIONS, eng, JudgeConfig(max_reasks=2))
    assert [r["process_label"] for r in out] == ["GOOD", "UNKNOWN", "GOOD"]
    assert [len(c) for c in eng.calls] == [3, 2, 1]  # re-asks only for the undecided ones, at most max_reasks
    assert (
        out[0]["judge_text"].count(REASK_SEPARATOR) == 1 and out[1]["judge_text"].count(REASK_SEPARATOR) == 2
    )
    reask = eng.calls[1][0]
    assert [m["role"] for m in reask] == ["user", "assistant", "user"]
    assert reask[1]["content"] == "Let me think about this step..." and "GOOD or BAD" in reask[2]["content"]
    none = judge_shard(rows, QUESTIONS, ScriptedEngine(), JudgeConfig(max_reasks=0))
    assert [r["process_label"] for r in none] == ["UNKNOWN", "UNKNOWN", "GOOD"]


class WordTokenizer:
    """Counts words: enough to measure prompts against a context limit."""

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return "\n".join(m["content"] for m in messages)

    def encode(self, text, add_special_tokens=False):
        return list(range(len(text.split())))


class LimitedEngine(ScriptedEngine):
    """A judge with a context limit that, like vLLM, fails the whole batch on one prompt over it."""

    tokenizer = WordTokenizer()

    def __init__(self, limit: int, advertised: bool = True):
        super().__init__()
        self.limit = limit
        self.max_context = limit if advertised else None

    def generate(self, prompts, sampling, adapter=None):
        for p in prompts:
            n = len(self.tokenizer.encode(self.tokenizer.apply_chat_template(p)))
            if n >= self.limit:
                raise ValueError(f"prompt of {n} tokens is longer than the maximum model length {self.limit}")
        return super().generate(prompts, sampling, adapter)


def test_prompts_over_the_judge_context_are_skipped_not_fatal():
    long_action = "<search_query>" + "word " * 400 + "[good]</search_query>"
    rows = [
        traj(
            "t1",
            "q1",
            ["<search_query>a [good]</search_query>", "<answer>Paris [good]</answer>"],
            final="Paris",
        ),
        traj("t2", "q1", [long_action, "<answer>Paris [good]</answer>"], final="Paris"),
    ]
    with pytest.raises(ValueError, match="maximum model length"):  # what the check prevents
        judge_shard(rows, QUESTIONS, LimitedEngine(300, advertised=False), JudgeConfig())
    eng = LimitedEngine(300)
    out = judge_shard(rows, QUESTIONS, eng, JudgeConfig())
    # t2's step 1 shows step 0 as context
    assert [(r["trajectory_id"], r["process_label"]) for r in out] == [
        ("t1", "GOOD"),
        ("t1", "GOOD"),
        ("t2", UNKNOWN),
        ("t2", UNKNOWN),
    ]
    assert (
        all(r["judge_text"].startswith(TOO_LONG) for r in out[2:]) and "context 300" in out[2]["judge_text"]
    )
    assert len(eng.calls) == 1 and len(eng.calls[0]) == 2  # only the prompts that fit were sent, once
    assert [
        r["process_label"] for r in judge_shard(rows, QUESTIONS, LimitedEngine(10_000), JudgeConfig())
    ] == ["GOOD"] * 4


def test_reasks_sent_do_not_count_prompts_that_were_not_sent():
    import pyarrow as pa

    from swirl.stages.judge import reasks_sent

    texts = pa.array(
        [
            "GOOD",
            f"hm{REASK_SEPARATOR}GOOD",
            f"hm{REASK_SEPARATOR}hm{REASK_SEPARATOR}{TOO_LONG} (9 tokens)",
            f"{TOO_LONG} (9 tokens)",
            None,
        ]
    )
    assert reasks_sent(texts) == 2


def test_llm_outcome_grading_alongside_the_rule():
    rows = [
        traj("t1", "q1", ["<answer>Paris</answer>"], final="Paris"),
        traj("t2", "q1", ["<answer>Lyon</answer>"], final="Lyon"),
        traj("t3", "q1", ["<answer>mumble</answer>"], final="mumble"),
        traj("t4", "q1", ["<search_query>x</search_query>"], final=None),
    ]
    eng = ScriptedEngine()
    out = judge_shard(
        rows, QUESTIONS, eng, JudgeConfig.model_validate({"outcome": {"llm": True}, "max_reasks": 1})
    )
    by = {r["trajectory_id"]: r for r in out}
    assert [by[t]["outcome_correct"] for t in ("t1", "t2", "t3", "t4")] == [True, False, False, False]
    # key "Paris / Paris, France" is not literally "Paris" for this grader
    assert by["t1"]["outcome_llm"] is False
    assert by["t3"]["outcome_llm"] is None and by["t3"]["outcome_llm_text"].count(REASK_SEPARATOR) == 1
    assert by["t4"]["outcome_llm"] is False and by["t4"]["outcome_llm_text"] == ""  # no answer: not asked
    grading = [p[0]["content"] for p in eng.calls[0] if "answer key" in p[0]["content"]]
    assert len(grading) == 3 and "The answer key says: Paris / Paris, France" in grading[0]


def test_inconsistent_trajectory_or_unknown_question_is_an_error():
    with pytest.raises(ValueError, match="num_actions=3"):
        judge_shard(
            [traj("t1", "q1", ["<answer>a</answer>"], num_actions=3)],
            QUESTIONS,
            ScriptedEngine(),
            JudgeConfig(),
        )
    with pytest.raises(ValueError, match="question 'q9' is not in the questions tables"):
        judge_shard([traj("t1", "q9", ["<answer>a</answer>"])], QUESTIONS, ScriptedEngine(), JudgeConfig())


# ----------------------------------------------------------------------------------- the stage
def _inputs(tmp_path, n: int):
    store = Store(str(tmp_path / "store"))
    trajs = [
        traj(
            f"t{i}",
            f"q-t{i}",
            [
                f"<search_query>s{i} [good]</search_query>",
                f"<answer>{i} [{'bad' if i % 3 == 0 else 'good'}]</answer>",
            ],
            final=str(i),
        )
        for i in range(n)
    ]
    qs = [
        {**question(f"q-t{i}", "gsm8k" if i % 2 else "hotpotqa"), "answers": [str(i if i % 4 else i + 1)]}
        for i in range(n)
    ]
    t = store.write_table("generate", "g1", to_table("trajectories", trajs), "trajectories", {})
    q = store.write_table("ingest", "q1", to_table("questions", qs), "questions", {})
    return store, t, q


def test_run_judge_resumes_after_a_crash_without_repeating_work(tmp_path):
    store, t, q = _inputs(tmp_path, 7)
    cfg = JudgeConfig(engine=SCRIPTED, shard_size=2)
    crashing = ScriptedEngine(crash_on_call=3)
    with pytest.raises(RuntimeError, match="crashed"):
        run_judge(store, t, q, cfg, engine=crashing)
    assert store.sharded("judge", judge_version(t, q, cfg), "judgments", {}).done_keys() == {
        "t0",
        "t1",
        "t2",
        "t3",
    }
    eng = ScriptedEngine()
    ref = run_judge(store, t, q, cfg, engine=eng)
    asked = {re.search(r"Question (q-t\d)\?", p[0]["content"]).group(1) for call in eng.calls for p in call}
    assert asked == {"q-t4", "q-t5", "q-t6"}  # only the trajectories not stored yet
    assert not eng.closed  # the caller's engine is the caller's to close
    rows = store.read_ref(ref).to_pylist()
    assert sorted((r["trajectory_id"], r["step"]) for r in rows) == [
        (f"t{i}", s) for i in range(7) for s in (0, 1)
    ]
    s = ref.summary
    assert (s["trajectories"], s["steps"], s["good"], s["bad"], s["unknown"]) == (7, 14, 11, 3, 0)
    assert s["resumed_trajectories"] == 4 and s["judged_this_run"] == 3
    assert s["outcome_rule_correct"] == 5  # answers match except t0 and t4 (gold i + 1)
    assert "outcome_llm_correct" not in s
    fresh = tmp_path / "fresh"
    store2, t2, q2 = _inputs(fresh, 7)
    ref2 = run_judge(store2, t2, q2, cfg, engine=ScriptedEngine())
    assert (
        store2.read_ref(ref2)
        .sort_by([("trajectory_id", "ascending"), ("step", "ascending")])
        .equals(store.read_ref(ref).sort_by([("trajectory_id", "ascending"), ("step", "ascending")]))
    )
    again = ScriptedEngine()
    assert run_judge(store, t, q, cfg, engine=again) == ref and again.calls == []  # complete: nothing asked


def test_run_judge_counts_unknown_and_reasks(tmp_path):
    store = Store(str(tmp_path / "s"))
    trajs = [
        traj(
            "t1",
            "q1",
            ["<search_query>[mumble]</search_query>", "<answer>Paris [mumble-once]</answer>"],
            final="Paris",
        )
    ]
    t = store.write_table("generate", "g", to_table("trajectories", trajs), "trajectories", {})
    q = store.write_table("ingest", "q", to_table("questions", [question("q1", "hotpotqa")]), "questions", {})
    ref = run_judge(
        store,
        t,
        q,
        JudgeConfig.model_validate({"max_reasks": 3, "outcome": {"llm": True}, "engine": SCRIPTED}),
        engine=ScriptedEngine(),
    )
    s = ref.summary
    assert (s["good"], s["bad"], s["unknown"], s["unknown_rate"]) == (1, 0, 1, 0.5)
    assert s["process_reasks"] == 3 + 1 and s["outcome_llm_enabled"] is True and s["outcome_llm_correct"] == 0


def test_judge_stage_with_the_tiny_hf_model(tmp_path, hf_engine):
    """A real local engine: a random tiny model rarely ends in a verdict, and that is counted, never GOOD."""
    store, t, q = _inputs(tmp_path, 2)
    cfg = JudgeConfig(
        engine=EngineConfig(kind="hf", model=hf_engine.model, dtype="float32"), max_tokens=8, max_reasks=1
    )
    ref = run_judge(store, t, q, cfg, engine=hf_engine)
    rows = store.read_ref(ref).to_pylist()
    assert len(rows) == 4 and {r["process_label"] for r in rows} <= {"GOOD", "BAD", "UNKNOWN"}
    for r in rows:
        assert r["process_label"] == (parse_verdict(r["judge_text"].split(REASK_SEPARATOR)[-1]) or "UNKNOWN")
    s = ref.summary
    assert s["good"] + s["bad"] + s["unknown"] == 4 and s["judge_model"] == hf_engine.model


# ------------------------------------------------------------------------------- fault injection
def test_judge_over_http_retries_persists_and_resumes_only_the_rest(tmp_path):
    """A real HTTP judge that returns 500s and stalls; then a forced failure mid-run; the re-run does the
    rest."""
    store, t, q = _inputs(tmp_path, 6)
    broken = {"on": True}

    def which(body) -> str:
        return re.search(r"Question (q-t\d)\?", body["messages"][0]["content"]).group(1)

    def fault(body, nth):
        tq = which(body)
        if tq == "q-t0" and nth == 1:
            # transient: the first attempt of each of its prompts fails, then is retried
            return ("status", 500)
        if (
            tq == "q-t1"
            and nth == 1
            and "[good]</answer>" in body["messages"][0]["content"].split("My last")[-1]
        ):
            return ("sleep", 1.2)  # a stall past the client timeout: retried
        if tq == "q-t4" and broken["on"]:
            return ("status", 503)  # the forced failure: every attempt fails
        return None

    def reply(body) -> str:
        return scripted_reply(body["messages"])

    with ChatServer(reply=reply, fault=fault) as srv:
        cfg = JudgeConfig.model_validate(
            {
                "shard_size": 2,
                "engine": {
                    "kind": "openai",
                    "base_url": srv.url,
                    "model": "judge",
                    "api_key_env": "",
                    "timeout_s": 0.5,
                    "max_retries": 2,
                    "backoff_s": 0.01,
                    "backoff_max_s": 0.05,
                },
            }
        )
        with pytest.raises(OpenAIEngineError, match="after 3 attempts"):
            run_judge(store, t, q, cfg)
        version = judge_version(t, q, cfg)
        assert not store.is_complete("judge", version)
        assert store.sharded("judge", version, "judgments", {}).done_keys() == {"t0", "t1", "t2", "t3"}
        first_run = [which(b) for b in srv.requests]
        assert first_run.count("q-t0") == 4  # 2 steps + 1 retry each
        assert first_run.count("q-t1") == 3  # 2 steps + 1 retry after the stall
        assert first_run.count("q-t2") == 2 and first_run.count("q-t3") == 2
        assert first_run.count("q-t4") == 2 * 3  # both steps, 3 attempts each

        broken["on"] = False
        n_before = len(srv.requests)
        ref = run_judge(store, t, q, cfg)
        second_run = [which(b) for b in srv.requests[n_before:]]
        assert sorted(second_run) == ["q-t4", "q-t4", "q-t5", "q-t5"]  # nothing finished was asked again
    rows = store.read_ref(ref).to_pylist()
    assert len(rows) == 12 and {r["process_label"] for r in rows} == {"GOOD", "BAD"}
    assert ref.summary["resumed_trajectories"] == 4 and ref.summary["engine_retries_this_run"] == 0
    assert ref.summary["judge_model"] == "judge"
