"""The warm-up as a pipeline step on the tiny model (HF engine): a 2-round swirl_iterate with the Run form's
warm-up switch runs the warm-up (SFT on the synthetic datasets' gold demonstrations) as round 0, and round
0's adapter is round 1's policy in the store, in MLflow and in the Prefect rounds artifact; a single round
(`swirl run`) with the warm-up is two tracked runs and one report of base, warm-up and trained.

The chain and the round run once for the module (the round's stages are store hits of the chain's); each
test asserts one behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.support.iterate_config import write_iterate_config

if TYPE_CHECKING:
    from flows.results import IterationResult, RoundResult
    from swirl.config import RunConfig

pytestmark = pytest.mark.slow
KNOBS = {"warmup": True, "warmup_steps": 2, "eval_questions": 2}


@dataclass(frozen=True)
class Warm:
    cfg: RunConfig
    chain: IterationResult  # rounds=2: the warm-up (round 0), rounds 1 and 2
    single: RoundResult  # swirl_round on the same config: the warm-up, then one round


@pytest.fixture(scope="module")
def warm(prefect_harness, tmp_path_factory, tiny_model_dir) -> Warm:
    from flows.iterate import swirl_iterate
    from flows.parameters import Knobs, resolve_config
    from flows.round import swirl_round

    path = write_iterate_config(tmp_path_factory.mktemp("warmup"), tiny_model_dir, name="wu")
    data = yaml.safe_load(open(path))
    # room for a whole gold demonstration (2 calculator steps and the answer, ~15 tokens each)
    data["generate"].update(max_steps_math=3, max_tokens_per_step=32)
    with open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    chain = swirl_iterate(path, rounds=2, knobs=Knobs(**KNOBS))
    cfg = resolve_config(path, Knobs(**KNOBS))
    return Warm(cfg, chain, swirl_round(cfg))


@pytest.fixture(scope="module")
def client(warm):
    from mlflow import MlflowClient

    return MlflowClient(warm.cfg.run.mlflow_uri)


def _generated_with(store, adapter: str) -> list[dict]:
    """The manifests of the generate outputs whose trajectories name `adapter` as their policy's."""
    return [
        m
        for m in store.versions("generate")
        if adapter in set(store.read("generate", m["version"])["adapter"].to_pylist())
    ]


def test_the_warm_up_is_round_0_and_its_adapter_is_round_1_s_policy(warm):
    r0, r1, r2 = warm.chain.rounds
    assert [r.round for r in (r0, r1, r2)] == [0, 1, 2] and warm.chain.stopped is None
    assert (r0.adapter_in, r1.adapter_in, r2.adapter_in) == ("", r0.adapter, r1.adapter)
    assert len({r0.adapter, r1.adapter, r2.adapter}) == 3
    assert set(r0.accuracy_before) == set(r0.accuracy) == {"gsm8k_test"}  # its evaluation: base vs warm-up
    assert r1.accuracy_before == r0.accuracy  # round 1 starts from the warm-up, on the same questions


def test_in_the_store_round_1_generates_with_and_trains_the_warm_up_s_adapter(warm):
    from swirl.store import Store

    r0, r1, _ = warm.chain.rounds
    store = Store(warm.cfg.run.store_root)
    (gold,) = [m for m in store.versions("generate") if m["config"]["generate"]["source"] == "gold"]
    assert gold["config"]["generate"]["samples_per_question"] == 1
    (round1,) = _generated_with(store, r0.adapter)  # the policy recorded in round 1's trajectories
    assert round1["config"]["generate"]["source"] == "policy"
    trains = {m["version"]: m["config"]["train"] for m in store.versions("train")}
    warm_train = trains[r0.train_version]
    assert (warm_train["objective"], warm_train["max_steps"], warm_train["kl_beta"]) == ("sft", 2, 0.0)
    assert trains[r1.train_version]["lora"]["init_adapter"] == r0.adapter  # trained further from it
    assert r0.kept_steps > 0  # gold demonstrations kept by the outcome filter


def test_in_mlflow_round_0_is_the_warm_up_run_whose_adapter_is_round_1_s_policy(warm, client):
    r0, r1, _ = warm.chain.rounds
    it = client.get_run(warm.chain.mlflow_run_id)
    exp = it.info.experiment_id
    rounds = client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{it.info.run_id}'", order_by=["tags.swirl.round"]
    )
    assert [r.info.run_name for r in rounds] == ["wu warm-up", "wu round 1", "wu round 2"]
    assert [r.data.tags["swirl.round"] for r in rounds] == ["0", "1", "2"]
    assert rounds[0].data.tags["swirl.kind"] == "warm-up" and rounds[0].info.run_id == r0.mlflow_run_id
    stages0 = client.search_runs([exp], f"tags.mlflow.parentRunId = '{rounds[0].info.run_id}'")
    names0 = {r.info.run_name: r for r in stages0}
    assert {"eval/gsm8k_test/base", "eval/gsm8k_test/trained"} <= set(names0)  # its own evaluation
    assert names0["train"].data.tags["swirl.adapter"] == r0.adapter
    assert rounds[1].data.params["policy.adapter"] == r0.adapter  # round 1's policy
    history = client.get_metric_history(it.info.run_id, "round/mean_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2]  # step 0: the warm-up, logged once


def test_in_the_prefect_rounds_artifact_round_1_is_from_the_warm_up_s_adapter(warm, client):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.iterate import adapter_name

    r0, r1, _ = warm.chain.rounds
    flow_run_id = client.get_run(warm.chain.mlflow_run_id).data.tags["prefect.flow_run_id"]
    with get_client(sync_client=True) as prefect:
        (artifact,) = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["rounds"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    lines = [line for line in artifact.data.splitlines() if line.startswith("| ")]
    head, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = {r[0]: dict(zip(head, r, strict=True)) for r in rows}
    assert list(rows) == ["start", "0 (warm-up)", "1", "2"]
    assert rows["0 (warm-up)"]["adapter"] == adapter_name(r0.adapter) == r0.train_version
    assert rows["1"]["from"] == r0.train_version and rows["1"]["adapter"] == r1.train_version
    assert rows["0 (warm-up)"]["MLflow run"] == "wu warm-up"


def test_a_single_round_with_the_warm_up_reports_base_warm_up_and_trained(warm, client):
    r0, r1, _ = warm.chain.rounds
    single = warm.single
    assert set(single.results) == {"base@gsm8k_test", "warm-up@gsm8k_test", "trained@gsm8k_test"}
    assert single.stages["train"].adapter == r1.adapter  # the same round as the chain's round 1
    assert single.accuracy("warm-up") == r0.accuracy and single.accuracy("base") == r0.accuracy_before
    report = open(single.stages["eval"].report, encoding="utf-8").read()
    assert "warm-up" in report and "base" in report and "trained" in report
    exp = client.get_run(single.mlflow_run_id).info.experiment_id
    top = client.search_runs([exp], "attributes.status = 'FINISHED'", max_results=1000)
    names = {r.info.run_name for r in top if "mlflow.parentRunId" not in r.data.tags}
    assert {"wu warm-up #1", "wu #1", "wu iterate #1"} <= names  # two tracked runs: warm-up and round
    assert single.mlflow_run_name == "wu #1"
    assert client.get_run(single.mlflow_run_id).data.params["policy.adapter"] == r0.adapter
