"""The model registry of a config's adapters: the champion alias moves only to a better-evaluated version,
each version is tagged with its accuracy, and a cached train output is not registered twice."""

from __future__ import annotations


def test_the_champion_moves_only_to_a_better_version(tmp_path):
    from mlflow import MlflowClient

    from tasks.registry import CHAMPION, promote_by_accuracy, register_adapter
    from tasks.tracking import Tracking

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    client.create_registered_model("m")
    v1, v2, v3 = (
        client.create_model_version("m", str(tmp_path), tags={"swirl.train_version": f"t{i}"}).version
        for i in (1, 2, 3)
    )
    assert promote_by_accuracy(uri, "m", v1, {"a": 0.5, "b": 0.3})  # no champion yet
    tags = client.get_model_version("m", v1).tags
    assert (tags["swirl.accuracy"], tags["swirl.accuracy.a"]) == ("0.400000", "0.500000")
    assert not promote_by_accuracy(uri, "m", v2, {"a": 0.4})  # a tie: the first to reach it keeps the alias
    assert not promote_by_accuracy(
        uri, "m", v1, {"a": 0.5, "b": 0.3}
    )  # already the champion (a cached round)
    assert client.get_model_version_by_alias("m", CHAMPION).version == v1
    assert promote_by_accuracy(uri, "m", v3, {"a": 0.45, "b": 0.45})
    assert client.get_model_version_by_alias("m", CHAMPION).version == v3

    # a cached train stage (the same train version): its version, nothing logged or registered again
    tr = Tracking(uri, "0", "no-parent")
    tags = {"swirl.train_version": "t2", "swirl.run": "it"}
    assert register_adapter(tr, "no-run", "/no/adapter", "base", "m", tags) == str(v2)
    assert len(client.search_model_versions("name = 'm'")) == 3
