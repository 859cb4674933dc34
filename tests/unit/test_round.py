"""The round's wiring without a Prefect server: which stages run, and the value model an OREO round's
evaluation uses."""

from __future__ import annotations

import pytest


def test_stages_run_with_what_they_depend_on():
    from flows.round import required_stages

    assert required_stages(["evaluate"]) == {"evaluate", "corpus", "ingest"}  # evaluation alone never trains
    assert required_stages(["train", "evaluate"]) == {
        "ingest",
        "corpus",
        "generate",
        "judge",
        "decompose",
        "filter",
        "train",
        "evaluate",
    }
    assert required_stages(["prepare", "ingest"]) == {"prepare", "ingest"}


def test_a_trained_value_model_is_the_round_s_own_or_an_error():
    from flows.results import StageOutput
    from flows.round import with_value_model
    from swirl.config import ConfigError
    from swirl.evaluation.config import EvaluateConfig

    beam = EvaluateConfig(decoding="beam", value_model="trained", temperature=0.7)
    train = StageOutput("v1", 4, False, "/s/train/v1", 1.0, "rid", adapter="/s/train/v1/files/adapter")
    with pytest.raises(ConfigError, match="train.objective oreo"):
        with_value_model(beam, train)  # a train output without a value model (not oreo)
    oreo = StageOutput("v1", 4, False, "/s/train/v1", 1.0, "rid", value="/s/train/v1/files/value")
    assert with_value_model(beam, oreo).value_model == "/s/train/v1/files/value"
    greedy = EvaluateConfig()
    assert with_value_model(greedy, None) is greedy
