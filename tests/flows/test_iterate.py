"""swirl_iterate on the tiny model (HF engine, SFT): each round starts from the previous round's adapter,
finished rounds are not run again, `more_rounds` adds rounds, MLflow holds the iteration, its rounds and the
registered adapters.

One chain is run once for the module (two rounds, the same again, then one more round); each test asserts
one behaviour of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.support.iterate_config import write_iterate_config

if TYPE_CHECKING:
    from flows.results import IterationResult
    from swirl.config import RunConfig


@dataclass(frozen=True)
class Chain:
    path: str
    cfg: RunConfig
    first: IterationResult  # rounds=2
    again: IterationResult  # the same call again: nothing left to run
    more: IterationResult  # more_rounds=1: round 3


@pytest.fixture(scope="module")
def chain(prefect_harness, tmp_path_factory, tiny_model_dir) -> Chain:
    from flows.iterate import swirl_iterate
    from flows.parameters import Knobs
    from swirl.config import load_config

    path = write_iterate_config(tmp_path_factory.mktemp("iterate"), tiny_model_dir)
    first = swirl_iterate(path, rounds=2, knobs=Knobs(eval_questions=3))
    again = swirl_iterate(path, rounds=2, knobs=Knobs(eval_questions=3))
    more = swirl_iterate(path, more_rounds=1, knobs=Knobs(eval_questions=3))
    return Chain(path, load_config(path), first, again, more)


@pytest.fixture(scope="module")
def client(chain):
    from mlflow import MlflowClient

    return MlflowClient(chain.cfg.run.mlflow_uri)


def test_each_round_starts_from_the_previous_round_s_adapter(chain):
    from swirl.store import Store

    r1, r2, r3 = chain.more.rounds
    assert [r.round for r in (r1, r2, r3)] == [1, 2, 3] and chain.first.stopped is None
    assert (r1.adapter_in, r2.adapter_in, r3.adapter_in) == ("", r1.adapter, r2.adapter)
    assert len({r1.adapter, r2.adapter, r3.adapter}) == 3
    store = Store(chain.cfg.run.store_root)
    # generated with it: the policy recorded in the trajectories
    adapters = {
        a
        for m in store.versions("generate")
        for a in store.read("generate", m["version"])["adapter"].to_pylist()
    }
    assert adapters == {"", r1.adapter, r2.adapter}
    # ... and trained further from it (the train output's config starts from it)
    trains = {m["config"]["train"]["lora"]["init_adapter"] for m in store.versions("train")}
    assert trains == {None, r1.adapter, r2.adapter}


def test_the_run_form_s_knobs_apply(chain):
    from swirl.store import Store

    assert set(chain.first.rounds[0].accuracy) == {"gsm8k_test"}
    store = Store(chain.cfg.run.store_root)
    assert {m["rows"] for m in store.versions("evaluate")} == {3}  # 3 questions evaluated, not the file's 4


def test_a_rerun_keeps_the_finished_rounds_and_runs_none(chain, client):
    assert chain.again.rounds == chain.first.rounds
    it = client.get_run(chain.again.mlflow_run_id)
    under = client.search_runs([it.info.experiment_id], f"tags.mlflow.parentRunId = '{it.info.run_id}'")
    assert under == []  # no round run under the second iteration
    assert chain.more.rounds[:2] == chain.first.rounds


def test_mlflow_holds_the_iteration_its_rounds_and_their_stages(chain, client):
    it = client.get_run(chain.first.mlflow_run_id)
    assert it.info.run_name == "it iterate #1" and it.data.tags["swirl.kind"] == "iterate"
    rounds = client.search_runs(
        [it.info.experiment_id],
        f"tags.mlflow.parentRunId = '{it.info.run_id}'",
        order_by=["tags.swirl.round"],
    )
    assert [r.info.run_name for r in rounds] == ["it round 1", "it round 2"]
    stages2 = client.search_runs(
        [it.info.experiment_id], f"tags.mlflow.parentRunId = '{rounds[1].info.run_id}'"
    )
    judge = next(r for r in stages2 if r.info.run_name == "judge/gsm8k")
    gen2 = next(r for r in stages2 if r.info.run_name == "generate/gsm8k")
    # lineage: the judge's dataset inputs are the trajectories (and questions) it read
    assert gen2.data.tags["swirl.version"] in {d.dataset.digest for d in judge.inputs.dataset_inputs}
    history = client.get_metric_history(it.info.run_id, "round/mean_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2]  # round 0: the policy the chain started from


def test_every_round_registers_its_adapter_and_the_best_is_champion(chain, client):
    rounds = chain.more.rounds
    versions = client.search_model_versions("name = 'it-exp'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    by_round = {v.tags["swirl.round"]: v for v in versions}
    for r in rounds:
        assert str(by_round[str(r.round)].version) == str(r.model_version)
        assert by_round[str(r.round)].tags["swirl.train_version"] in r.adapter
    champion = client.get_model_version_by_alias("it-exp", "champion")
    best = max(r.mean_accuracy for r in rounds)
    first_best = next(r for r in rounds if r.mean_accuracy == best)  # ties: the first to reach it keeps it
    assert str(champion.version) == str(first_best.model_version)


def test_the_champion_loads_as_an_mlflow_model_and_generates(chain):
    import mlflow.pyfunc

    mlflow.set_tracking_uri(chain.cfg.run.mlflow_uri)
    model = mlflow.pyfunc.load_model("models:/it-exp@champion")
    model._model_impl.python_model.max_new_tokens = 4
    out = model.predict(["What is 2 + 3?"])
    assert len(out) == 1 and isinstance(out[0], str)


def test_an_oreo_round_evaluates_with_the_value_model_it_trained(prefect_harness, tmp_path, tiny_model_dir):
    """objective oreo + beam decoding with `evaluate.value_model: trained`: the round's evaluation of its
    adapter ranks steps with the value model its train stage just wrote."""
    from flows.round import swirl_round
    from swirl.config import config_from_dict, load_config
    from swirl.store import Store

    data = load_config(write_iterate_config(tmp_path, tiny_model_dir, name="oreo")).model_dump(mode="json")
    data["train"]["objective"] = "oreo"
    data["evaluate"].update(
        decoding="beam", beam_width=2, value_model="trained", temperature=0.7, questions=2, base=False
    )
    out = swirl_round(config_from_dict(data))
    train = out.stages["train"]
    assert train.value.endswith("/files/value") and train.value.startswith(train.path)
    store = Store(data["run"]["root"])
    ev = store.ref("evaluate", out.stages["eval/gsm8k_test/trained"].version)
    assert ev.summary["decoding"].startswith("beam(B=2")
    manifest = store.manifest("evaluate", ev.version)
    assert "beam" in manifest["config"]["decoding"]  # the value model is part of the evaluation's version
