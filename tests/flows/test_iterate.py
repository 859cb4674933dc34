"""swirl_iterate on the tiny model (HF engine, SFT): round 2 starts from round 1's adapter, finished rounds
are not run again, `more_rounds` adds rounds, MLflow holds the iteration, its rounds and the registered
adapters."""

from __future__ import annotations

from tests.flows.iterate_config import write_iterate_config


def test_iterate_chains_rounds_resumes_and_registers(prefect_harness, tmp_path, tiny_model_dir):
    from mlflow import MlflowClient

    from flows.iterate import swirl_iterate
    from flows.parameters import Knobs
    from swirl.config import load_config
    from swirl.store import Store

    path = write_iterate_config(tmp_path, tiny_model_dir)
    first = swirl_iterate(path, rounds=2, knobs=Knobs(eval_questions=3))
    r1, r2 = first["rounds"]
    assert (r1["round"], r2["round"]) == (1, 2) and first["stopped"] is None
    assert r1["adapter_in"] == "" and r2["adapter_in"] == r1["adapter"] != r2["adapter"]

    # round 2 generated with round 1's adapter: the policy recorded in its trajectories' manifest
    cfg = load_config(path)
    store = Store(cfg.run.store_root)
    adapters = sorted(
        a
        for m in store.versions("generate")
        for a in set(store.read("generate", m["version"])["adapter"].to_pylist())
    )
    assert adapters == ["", r1["adapter"]]
    # ... and trained from it (the train output's config starts from round 1's adapter)
    trains = {m["config"]["train"]["lora"]["init_adapter"] for m in store.versions("train")}
    assert trains == {None, r1["adapter"]}
    # the knob applied: 3 questions evaluated, not the file's 4
    assert set(r1["accuracy"]) == {"gsm8k_test"}
    assert {m["rows"] for m in store.versions("evaluate")} == {3}

    # MLflow: the iteration run, its two rounds (stages under them), a registered model with two versions
    client = MlflowClient(cfg.run.mlflow_uri)
    it = client.get_run(first["mlflow_run_id"])
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
    digests = {d.dataset.digest for d in judge.inputs.dataset_inputs}
    assert gen2.data.tags["swirl.version"] in digests
    history = client.get_metric_history(it.info.run_id, "round/mean_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2]
    versions = client.search_model_versions("name = 'it-exp'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    by_round = {v.tags["swirl.round"]: v for v in versions}
    assert by_round["2"].tags["swirl.train_version"] in r2["adapter"]
    champion = client.get_model_version_by_alias("it-exp", "champion")
    best = max([r1, r2], key=lambda r: r["mean_accuracy"])  # ties: the first to reach it keeps the alias
    first_best = next(r for r in (r1, r2) if r["mean_accuracy"] == best["mean_accuracy"])
    assert str(champion.version) == str(first_best["model_version"])

    # the registered champion loads as an MLflow model (base + adapter) and generates
    import mlflow.pyfunc

    mlflow.set_tracking_uri(cfg.run.mlflow_uri)
    model = mlflow.pyfunc.load_model("models:/it-exp@champion")
    model._model_impl.python_model.max_new_tokens = 4
    out = model.predict(["What is 2 + 3?"])
    assert len(out) == 1 and isinstance(out[0], str)

    # a re-run: both rounds are finished, nothing runs again (no new round runs)
    again = swirl_iterate(path, rounds=2, knobs=Knobs(eval_questions=3))
    assert [r["adapter"] for r in again["rounds"]] == [r1["adapter"], r2["adapter"]]
    runs = client.search_runs([it.info.experiment_id], "tags.`swirl.kind` = 'round'")
    assert len([r for r in runs if r.info.run_name.startswith("it round")]) == 2

    # "one more round" (what a schedule sets): round 3 from round 2's adapter
    more = swirl_iterate(path, more_rounds=1, knobs=Knobs(eval_questions=3))
    assert [r["round"] for r in more["rounds"]] == [1, 2, 3]
    assert more["rounds"][2]["adapter_in"] == r2["adapter"]
    assert len(client.search_model_versions("name = 'it-exp'")) == 3


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
    train = out["stages"]["train"]
    assert train["value"].endswith("/files/value") and train["value"].startswith(train["path"])
    store = Store(data["run"]["root"])
    ev = store.ref("evaluate", out["stages"]["eval/gsm8k_test/trained"]["version"])
    assert ev.summary["decoding"].startswith("beam(B=2")
    manifest = store.manifest("evaluate", ev.version)
    assert "beam" in manifest["config"]["decoding"]  # the value model is part of the evaluation's version
