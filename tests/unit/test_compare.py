"""`swirl compare`: two rounds logged the way swirl_round logs them (tasks.tracking), read back side by
side."""

from __future__ import annotations

import pytest

from swirl.store import StageRef
from tasks.tracking import finish_tracked_run, log_stage, start_tracked_run


def _round(uri: str, name: str, lr: float, base: dict, trained: dict, report: dict) -> str:
    tr = start_tracked_run(
        uri,
        "cmp",
        run_name=name,
        params={"train": {"learning_rate": lr, "lora": {"rank": 8}}},
        tags={},
        artifact_root=None,
    )
    for policy, summary in (("base", base), ("trained", trained)):
        ref = StageRef("evaluate", f"v-{name}-{policy}", "/nowhere", None, summary["questions"], summary)
        log_stage(tr, ref, {}, 1.0, False, name=f"eval/gsm8k_test/{policy}")
    log_stage(
        tr, StageRef("eval_report", f"r-{name}", "/nowhere", None, 0, report), {}, 0.1, False, name="eval"
    )
    finish_tracked_run(tr, "FINISHED")
    return tr.parent_run_id


@pytest.fixture(scope="module")
def two_rounds(tmp_path_factory):
    """Two rounds in one MLflow database, shared by the tests (they only read it)."""
    uri = "sqlite:///" + str(tmp_path_factory.mktemp("compare") / "mlflow.db")
    base = {"questions": 40, "accuracy_rule": 0.25, "accuracy_rule_low": 0.142, "accuracy_rule_high": 0.401}
    a = _round(
        uri,
        "round-a",
        1e-4,
        base,
        {"questions": 40, "accuracy_rule": 0.35, "accuracy_rule_low": 0.221, "accuracy_rule_high": 0.505},
        {"gsm8k_test": {"trained": {"gain_vs_base": 0.1, "mcnemar_p": 0.289}}},
    )
    b = _round(
        uri,
        "round-b",
        3e-4,
        base,
        {"questions": 40, "accuracy_rule": 0.5, "accuracy_rule_low": 0.352, "accuracy_rule_high": 0.648},
        {"gsm8k_test": {"trained": {"gain_vs_base": 0.25, "mcnemar_p": 0.0117}}},
    )
    return uri, a, b


def test_compare_prints_both_rounds_and_their_config_difference(two_rounds, capsys, monkeypatch):
    from flows.cli import main

    uri, a, b = two_rounds
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["compare", a, "round-b", "--tracking-uri", uri]) == 0  # by id and by name
    out = capsys.readouterr().out
    assert "round-a" in out and "round-b" in out and a[:8] in out and b[:8] in out
    assert "0.350 [0.221, 0.505]" in out and "0.500 [0.352, 0.648]" in out  # trained, one column per round
    assert out.count("0.250 [0.142, 0.401]") == 2  # the base policy, the same in both rounds
    assert "+0.100 vs base, p=0.289" in out and "+0.250 vs base, p=0.0117" in out
    diff = out[out.index("config differences") :]
    assert "train.learning_rate" in diff and "0.0001" in diff and "0.0003" in diff
    assert "train.lora.rank" not in diff  # equal params are not differences


def test_compare_unknown_run_is_one_clear_line(two_rounds, capsys):
    from flows.cli import main

    uri, _, _ = two_rounds
    assert main(["compare", "no-such-round", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert "no MLflow run with id or name 'no-such-round'" in err and "\n" not in err
