"""The typed records the flows return: their JSON shape (what MLflow and the store keep), an iteration's
round record built from a round's result, and a record read back from the store."""

from __future__ import annotations

import json
import pickle

from flows.results import EvalScore, IterationResult, RoundRecord, RoundResult, StageOutput


def _score(accuracy: float) -> EvalScore:
    return EvalScore(accuracy, accuracy - 0.1, accuracy + 0.1, None, 10)


def _round(number: int = 2) -> RoundResult:
    results = {
        "trained@a": _score(0.6),
        "trained@b": _score(0.4),
        "round 1@a": _score(0.5),
        "round 1@b": _score(0.1),
    }
    stages = {
        "filter/a": StageOutput("f1", 9, False, "/s/filter/f1", 0.5, "r1", kept_steps=7),
        "filter/b": StageOutput("f2", 3, True, "/s/filter/f2", 0.0, "r2", kept_steps=2),
        "train": StageOutput(
            "t1",
            4,
            False,
            "/s/train/t1",
            9.0,
            "r3",
            adapter="/s/train/t1/files/adapter",
            reward_mean=0.25,
            model_version="2",
        ),
        "eval": StageOutput("e1", 4, False, "/s/eval_report/e1", 0.1, "r4", report="/r.md", results=results),
    }
    return RoundResult(
        "it", number, "it round 2", "/s", "run2", "exp", "sqlite:///m.db", "http://ui", 12.5, stages
    )


def test_a_stage_output_leaves_out_what_another_stage_adds():
    out = StageOutput("v1", 9, False, "/s/filter/v1", 0.5, "rid", kept_steps=7)
    assert out.as_dict() == {
        "version": "v1",
        "rows": 9,
        "cached": False,
        "path": "/s/filter/v1",
        "seconds": 0.5,
        "mlflow_run_id": "rid",
        "kept_steps": 7,
    }


def test_a_round_result_reads_its_evaluation_and_is_json_and_pickles():
    result = _round()
    assert result.accuracy("trained") == {"a": 0.6, "b": 0.4}
    assert result.accuracy("round 1") == {"a": 0.5, "b": 0.1}
    assert result.accuracy("base") == {} and result.kept_steps() == 9
    data = json.loads(json.dumps(result.as_dict()))
    assert data["stages"]["eval"]["results"]["trained@a"]["accuracy_rule"] == 0.6
    assert "adapter" not in data["stages"]["filter/a"] and data["stages"]["train"]["model_version"] == "2"
    assert pickle.loads(pickle.dumps(result)) == result  # a Prefect flow may return it


def test_a_round_record_compares_the_new_adapter_with_the_policy_it_started_from():
    rec = RoundRecord.of_round(_round(), "/s/train/t0/files/adapter", "round 1")
    assert (rec.round, rec.adapter_in, rec.adapter) == (
        2,
        "/s/train/t0/files/adapter",
        "/s/train/t1/files/adapter",
    )
    assert rec.accuracy == {"a": 0.6, "b": 0.4} and rec.accuracy_before == {"a": 0.5, "b": 0.1}
    assert rec.mean_accuracy == 0.5 and rec.mean_accuracy_before == 0.3
    assert abs(rec.gain - 0.2) < 1e-12
    assert (rec.kept_steps, rec.reward_mean, rec.model_version) == (9, 0.25, "2")
    assert (rec.train_version, rec.mlflow_run_id, rec.mlflow_run_name) == ("t1", "run2", "it round 2")
    stored = json.loads(json.dumps(rec.as_dict()))  # what an `iteration` output's summary holds
    assert RoundRecord.from_dict(stored) == rec


def test_a_round_without_evaluation_has_no_gain():
    result = _round(1)
    stages = {k: v for k, v in result.stages.items() if k != "eval"}
    bare = RoundResult(**{**result.__dict__, "stages": stages})
    rec = RoundRecord.of_round(bare, None, "base")
    assert rec.adapter_in == "" and rec.accuracy == {} and rec.mean_accuracy is None and rec.gain is None
    it = IterationResult("it", "run", "it iterate #1", "http://ui", (rec,), None, "/s")
    assert it.as_dict()["rounds"][0]["round"] == 1
