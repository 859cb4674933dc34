"""Decompose (trajectory -> one row per action, state by reference) and the four filters, on hand-written
data."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from swirl.stages.base import Context, run_stage
from swirl.stages.decompose import Decompose
from swirl.stages.filter import Filter
from swirl.store import Store
from swirl.subtrajectories import (
    STRATEGIES,
    DecomposeConfig,
    FilterConfig,
    action_kind,
    decompose_batch,
    index_judgments,
    select,
    trajectory_flags,
)
from swirl.tables import to_table

PROMPT_TOKENS, ACTION_TOKENS, OBS_TOKENS = 10, 5, 7


def traj(tid: str, qid: str, actions: list[str], final: str | None = None, **over) -> dict:
    """A trajectory row as the rollout writes it: prompt, then action / observation turns, with token
    spans."""
    messages = [
        {"role": "system", "content": "You answer with tools."},
        {"role": "user", "content": f"Question {qid}?"},
    ]
    token_ids = list(range(1, PROMPT_TOKENS + 1))
    spans = []
    for i, a in enumerate(actions):
        start = len(token_ids)
        token_ids += [100 + i] * ACTION_TOKENS
        spans.append({"start": start, "end": len(token_ids)})
        messages.append({"role": "assistant", "content": a})
        if i < len(actions) - 1:
            messages.append({"role": "user", "content": f"query{i} -> result{i}"})
            token_ids += [200 + i] * OBS_TOKENS
    row = {
        "trajectory_id": tid,
        "question_id": qid,
        "sample_idx": 0,
        "messages": messages,
        "token_ids": token_ids,
        "action_spans": spans,
        "action_logprobs": [[-0.1] * ACTION_TOKENS for _ in actions],
        "final_answer": final,
        "stop_reason": "answer" if final is not None else "max_steps",
        "num_actions": len(actions),
        "model": "tiny",
        "adapter": None,
    }
    return {**row, **over}


def judgments(tid: str, labels: list[str], outcome: bool | None, llm: bool | None = None) -> list[dict]:
    return [
        {
            "trajectory_id": tid,
            "step": i,
            "process_label": lab,
            "judge_text": f"... {lab}",
            "outcome_correct": outcome,
            "outcome_llm": llm,
            "outcome_llm_text": "",
            "judge_model": "j",
        }
        for i, lab in enumerate(labels)
    ]


def question(qid: str, dataset: str) -> dict:
    return {
        "question_id": qid,
        "dataset": dataset,
        "split": "train",
        "question": f"Question {qid}?",
        "answers": ["1"],
        "level": "",
        "hops": None,
        "metadata": "{}",
    }


# ------------------------------------------------------------------------------------------ actions
@pytest.mark.parametrize(
    "text,kind",
    [
        ("I should look this up. <search_query>capital of France</search_query>", "search"),
        ("<math_exp>48 / 2</math_exp>", "math"),
        ("So the answer is <answer>Paris</answer>", "answer"),
        ("<think>hmm</think><search_query>x</search_query>", "search"),  # unknown tags are ignored
        # first complete tag wins; text after it is ignored
        ("<answer>Paris</answer> <search_query>more", "answer"),
        # (generation stops at the first close)
        ("<search_query>x</search_query><answer>y</answer>", "search"),
        # a second action opened before the first one closed
        ("<search_query>a <answer>b</answer>", "invalid"),
        ("<answer>a <math_exp>1+1</math_exp> b</answer>", "invalid"),
        ("no tags at all", "invalid"),
        ("<search>x</search>", "invalid"),  # unknown tag only
        ("<answer>   </answer>", "invalid"),  # empty
        ("<answer>Paris", "invalid"),  # incomplete
        ("", "invalid"),
        (None, "invalid"),
        ("<answer>multi\nline</answer>", "answer"),
    ],
)
def test_action_kind(text, kind):
    from swirl.protocol import parse_action

    assert action_kind(text) == kind
    assert kind == (parse_action(text).kind if text else "invalid")  # the rollout's own verdict


# ---------------------------------------------------------------------------------------- decompose
def _store(tmp_path, trajs, judged, questions, llm=False):
    store = Store(str(tmp_path / "store"))
    t = store.write_table("generate", "g1", to_table("trajectories", trajs), "trajectories", {})
    j = store.write_table(
        "judge", "j1", to_table("judgments", judged), "judgments", {}, summary={"outcome_llm_enabled": llm}
    )
    q = store.write_table("ingest", "q1", to_table("questions", questions), "questions", {})
    return store, t, j, q


def test_decompose_one_row_per_action_with_state_by_reference(tmp_path):
    a = traj(
        "t1",
        "q1",
        ["<search_query>a</search_query>", "<search_query>b</search_query>", "<answer>c</answer>"],
        "c",
    )
    b = traj("t2", "q2", ["<math_exp>1+1</math_exp>", "oops no tag"])
    empty = traj("t3", "q1", [])  # stopped before its first action: no steps
    judged = judgments("t1", ["GOOD", "BAD", "GOOD"], True) + judgments("t2", ["UNKNOWN", "BAD"], False)
    store, t, j, q = _store(
        tmp_path, [a, b, empty], judged, [question("q1", "hotpotqa"), question("q2", "gsm8k")]
    )
    ref = run_stage(store, Decompose(t, j, q, DecomposeConfig())).ref
    rows = store.read_ref(ref).to_pylist()
    assert [(r["trajectory_id"], r["step"]) for r in rows] == [
        ("t1", 0),
        ("t1", 1),
        ("t1", 2),
        ("t2", 0),
        ("t2", 1),
    ]
    assert [r["action_kind"] for r in rows] == ["search", "search", "answer", "math", "invalid"]
    assert [r["process_label"] for r in rows] == ["GOOD", "BAD", "GOOD", "UNKNOWN", "BAD"]
    assert [r["outcome_correct"] for r in rows] == [True] * 3 + [False] * 2
    assert [r["dataset"] for r in rows] == ["hotpotqa"] * 3 + ["gsm8k"] * 2
    for r in rows:
        src = a if r["trajectory_id"] == "t1" else b
        span = src["action_spans"][r["step"]]
        assert r["state_offset"] == span["start"]
        assert (
            r["action_text"] == [m for m in src["messages"] if m["role"] == "assistant"][r["step"]]["content"]
        )
        # the state is everything before the action: the prompt, earlier actions and their observations
        assert len(src["token_ids"][: r["state_offset"]]) == PROMPT_TOKENS + r["step"] * (
            ACTION_TOKENS + OBS_TOKENS
        )
    assert all(r["keep"] for r in rows)
    assert ref.summary["steps"] == 5 and ref.summary["trajectories"] == 2
    assert ref.summary["action_kinds"] == {"search": 2, "answer": 1, "math": 1, "invalid": 1}
    again = run_stage(store, Decompose(t, j, q, DecomposeConfig()))
    assert again.ref == ref and not again.computed  # complete: skipped


def test_decompose_batches_give_the_same_table(tmp_path):
    trajs = [traj(f"t{i}", "q1", ["<search_query>x</search_query>"] * (i % 3 + 1)) for i in range(9)]
    judged = [r for i in range(9) for r in judgments(f"t{i}", ["GOOD"] * (i % 3 + 1), i % 2 == 0)]
    store, t, j, q = _store(tmp_path, trajs, judged, [question("q1", "hotpotqa")])
    one = store.read_ref(run_stage(store, Decompose(t, j, q, DecomposeConfig(batch_rows=1000))).ref)
    ref = run_stage(store, Decompose(t, j, q, DecomposeConfig(batch_rows=2))).ref
    assert len(store.manifest("decompose", ref.version)["parts"]) == 5
    assert store.read_ref(ref).equals(one)


def test_decompose_uses_llm_outcome_when_asked(tmp_path):
    a = traj("t1", "q1", ["<answer>x</answer>"], "x")
    store, t, j, q = _store(tmp_path, [a], judgments("t1", ["GOOD"], False, llm=True), [question("q1", "d")])
    with pytest.raises(ValueError, match="judge.outcome.llm"):
        run_stage(store, Decompose(t, j, q, DecomposeConfig(outcome_source="llm")))
    store, t, j, q = _store(
        tmp_path / "b", [a], judgments("t1", ["GOOD"], False, llm=True), [question("q1", "d")], llm=True
    )
    llm_steps = run_stage(store, Decompose(t, j, q, DecomposeConfig(outcome_source="llm"))).ref
    assert store.read_ref(llm_steps).column("outcome_correct").to_pylist() == [True]
    assert (
        Decompose(t, j, q, DecomposeConfig()).plan().version
        != Decompose(t, j, q, DecomposeConfig(outcome_source="llm")).plan().version
    )


def test_decompose_errors_name_the_problem():
    qids, ds = pa.array(["q1"]), pa.array(["d"])
    jt = index_judgments(
        pa.table(
            {
                "trajectory_id": pa.array(["t1"]),
                "step": pa.array([0], pa.int32()),
                "process_label": pa.array(["GOOD"]),
                "outcome": pa.array([True]),
            }
        )
    )
    ok = traj("t1", "q1", ["<answer>x</answer>"])

    def batch(rows):
        return to_table("trajectories", rows)

    assert decompose_batch(batch([ok]), jt, qids, ds).num_rows == 1
    with pytest.raises(ValueError, match="num_actions=2"):
        decompose_batch(batch([{**ok, "num_actions": 2}]), jt, qids, ds)
    with pytest.raises(ValueError, match="1 action_spans"):
        decompose_batch(
            batch([traj("t1", "q1", ["a", "b"], action_spans=[{"start": 10, "end": 15}], num_actions=1)]),
            jt,
            qids,
            ds,
        )
    with pytest.raises(ValueError, match="no judgment for trajectory 't1' step 1"):
        decompose_batch(batch([traj("t1", "q1", ["a", "b"])]), jt, qids, ds)
    with pytest.raises(ValueError, match=r"questions \['q9'\]"):
        decompose_batch(batch([traj("t1", "q9", ["a"])]), jt, qids, ds)
    twice = index_judgments(
        pa.table(
            {
                "trajectory_id": pa.array(["t1", "t1"]),
                "step": pa.array([0, 0], pa.int32()),
                "process_label": pa.array(["GOOD", "BAD"]),
                "outcome": pa.array([True, True]),
            }
        )
    )
    with pytest.raises(ValueError, match="not steps 0..1 exactly once"):
        decompose_batch(batch([traj("t1", "q1", ["a", "b"])]), twice, qids, ds)


# -------------------------------------------------------------------------------------------- filter
# trajectory -> (dataset, step labels, outcome, strategies that keep it)
CASES = {
    "good_right": ("gsm8k", ["GOOD", "GOOD"], True, {"none", "process", "outcome", "process_outcome"}),
    "good_wrong": ("gsm8k", ["GOOD", "GOOD", "GOOD"], False, {"none", "process"}),
    "bad_right": ("gsm8k", ["GOOD", "BAD"], True, {"none", "outcome"}),
    "bad_wrong": ("hotpotqa", ["BAD"], False, {"none"}),
    "unknown_right": ("hotpotqa", ["GOOD", "UNKNOWN"], True, {"none", "outcome"}),  # UNKNOWN is not GOOD
    "unknown_wrong": ("hotpotqa", ["UNKNOWN"], False, {"none"}),
    "good_no_outcome": ("hotpotqa", ["GOOD"], None, {"none", "process"}),  # a missing outcome is not correct
    "good_right_hp": (
        "hotpotqa",
        ["GOOD", "GOOD", "GOOD", "GOOD"],
        True,
        {"none", "process", "outcome", "process_outcome"},
    ),
}


@pytest.fixture
def filter_inputs(tmp_path):
    trajs, judged, qs = [], [], []
    for tid, (ds, labels, outcome, _) in CASES.items():
        trajs.append(
            traj(tid, f"q-{tid}", [f"<search_query>{tid}{i}</search_query>" for i in range(len(labels))])
        )
        judged += judgments(tid, labels, outcome)
        qs.append(question(f"q-{tid}", ds))
    store, t, j, q = _store(tmp_path, trajs, judged, qs)
    return store, run_stage(store, Decompose(t, j, q, DecomposeConfig())).ref


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_keeps_exactly_the_expected_rows(filter_inputs, strategy):
    store, steps = filter_inputs
    ref = run_stage(store, Filter(steps, FilterConfig(strategy=strategy))).ref
    rows = store.read_ref(ref).to_pylist()
    assert len(rows) == sum(len(c[1]) for c in CASES.values())  # every row is written, keep or not
    expected = {tid for tid, c in CASES.items() if strategy in c[3]}
    for r in rows:
        assert r["keep"] == (r["trajectory_id"] in expected), (strategy, r["trajectory_id"])
    s = ref.summary
    assert s["strategy"] == strategy and s["kept_trajectories"] == len(expected)
    assert s["kept_steps"] == sum(len(CASES[t][1]) for t in expected)
    for other in STRATEGIES:  # every strategy's counts, total and per dataset, whichever one is applied
        keep = {tid for tid, c in CASES.items() if other in c[3]}
        assert s[f"kept_{other}"] == len(keep)
        for ds in ("gsm8k", "hotpotqa"):
            per = s["per_strategy"][other]["kept"]["per_dataset"][ds]
            assert per["trajectories"] == sum(CASES[t][0] == ds for t in keep)
            assert per["steps"] == sum(len(CASES[t][1]) for t in keep if CASES[t][0] == ds)
    again = run_stage(store, Filter(steps, FilterConfig(strategy=strategy)))
    assert again.ref == ref and not again.computed


def _flags(n_per_kind: int) -> pa.Table:
    rows = []
    for ds, (good, right), k in itertools.product(
        ("a", "b"), itertools.product((True, False), repeat=2), range(n_per_kind)
    ):
        tid = f"{ds}-{int(good)}{int(right)}-{k}"
        rows += [
            {"trajectory_id": tid, "dataset": ds, "process_label": "GOOD", "outcome_correct": right},
            {
                "trajectory_id": tid,
                "dataset": ds,
                "process_label": "GOOD" if good else "BAD",
                "outcome_correct": right,
            },
        ]
    return trajectory_flags(pa.Table.from_pylist(rows))


def test_fixed_count_min_keeps_the_same_number_for_every_strategy():
    flags = _flags(5)  # per dataset: 20 in all, 10 process, 10 outcome, 5 process_outcome
    kept, s = select(flags, FilterConfig(strategy="process", fixed_count="min", seed=3))
    assert s["fixed_count"] == {"a": 5, "b": 5}
    ids = flags.column("trajectory_id").to_pylist()
    for strategy in STRATEGIES:
        assert s["per_strategy"][strategy]["kept"]["trajectories"] == 10
        assert s["per_strategy"][strategy]["kept"]["per_dataset"] == {
            "a": {"trajectories": 5, "steps": 10},
            "b": {"trajectories": 5, "steps": 10},
        }
        chosen = [i for i, k in zip(ids, kept[strategy], strict=False) if k]
        if strategy in ("process", "process_outcome"):
            assert all(t.split("-")[1][0] == "1" for t in chosen)
        if strategy in ("outcome", "process_outcome"):
            assert all(t.split("-")[1][1] == "1" for t in chosen)
    assert s["per_strategy"]["none"]["eligible"]["trajectories"] == 40
    again, _ = select(flags, FilterConfig(strategy="process", fixed_count="min", seed=3))
    other, _ = select(flags, FilterConfig(strategy="process", fixed_count="min", seed=4))
    assert all((again[k] == kept[k]).all() for k in STRATEGIES)
    assert any((other[k] != kept[k]).any() for k in ("none", "process", "outcome"))


def test_fixed_count_number_and_its_limits():
    flags = _flags(5)
    _kept, s = select(flags, FilterConfig(strategy="none", fixed_count=8))
    assert s["kept_none"] == 16 and s["kept_process"] == 16 and s["kept_process_outcome"] == 10
    assert s["fixed_count_short"] == {"process_outcome": {"a": 5, "b": 5}}
    with pytest.raises(ValueError, match=r"filter.fixed_count=8: strategy process_outcome keeps only 5"):
        select(flags, FilterConfig(strategy="process_outcome", fixed_count=8))


def test_filter_stage_with_fixed_count_and_versions(filter_inputs):
    store, steps = filter_inputs
    ref = run_stage(store, Filter(steps, FilterConfig(strategy="process", fixed_count="min"))).ref
    kept = {r["trajectory_id"] for r in store.read_ref(ref).to_pylist() if r["keep"]}
    assert ref.summary["fixed_count"] == {"gsm8k": 1, "hotpotqa": 1}  # process_outcome pools: 1 and 1
    assert len(kept) == 2 and kept <= {t for t, c in CASES.items() if "process" in c[3]}
    assert Filter(steps, FilterConfig()).plan().version != Filter(steps, FilterConfig(seed=1)).plan().version


def test_empty_inputs_flow_through_judge_decompose_and_filter(tmp_path):
    from swirl.engines.config import EngineConfig
    from swirl.judging.config import JudgeConfig
    from swirl.stages.judge import Judge

    class NeverCalled:
        name, model, tokenizer = "never", "never", None

        def generate(self, prompts, sampling, adapter=None):
            raise AssertionError("no trajectories: the judge must not be asked anything")

        def close(self):
            pass

    store = Store(str(tmp_path / "s"))
    t = store.write_table("generate", "g", to_table("trajectories", []), "trajectories", {})
    q = store.write_table("ingest", "q", to_table("questions", []), "questions", {})
    cfg = JudgeConfig(engine=EngineConfig(kind="hf", model="never"))
    j = run_stage(store, Judge(t, q, cfg), Context(engines={"judge": NeverCalled()})).ref
    assert j.rows == 0 and j.summary["steps"] == 0 and j.summary["good_rate"] is None
    steps = run_stage(store, Decompose(t, j, q, DecomposeConfig())).ref
    assert steps.rows == 0
    f = run_stage(store, Filter(steps, FilterConfig(fixed_count="min"))).ref
    assert f.rows == 0 and f.summary["kept_trajectories"] == 0 and f.summary["fixed_count"] == {}


def test_judge_agreement_is_precision_and_recall_of_process_good_against_the_outcome():
    flags = _flags(5)  # per dataset: 20 in all, 10 process-GOOD, 10 correct, 5 both
    _kept, s = select(flags, FilterConfig(strategy="none"))
    a = s["judge_agreement"]
    assert a["a"] == {"process_good": 10, "correct": 10, "both": 5, "precision": 0.5, "recall": 0.5}
    assert a["all"]["both"] == 10 and a["all"]["precision"] == 0.5
    assert s["judge_precision"] == 0.5 and s["judge_recall"] == 0.5
    none_good = flags.set_column(
        flags.schema.get_field_index("all_good"), "all_good", pa.array([False] * len(flags))
    )
    _kept, s = select(none_good, FilterConfig(strategy="none"))
    assert s["judge_precision"] is None and s["judge_recall"] == 0.0
