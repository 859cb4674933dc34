"""Executors: the driver's scheduling (with fake workers), the config check, and (slow tier) generate and
evaluate on two Ray engine actors, one of them killed mid-stage, against the same stages run locally."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pytest

from swirl.data.config import DatasetSpec
from swirl.engines.config import EngineConfig
from swirl.episodes import GenerateConfig
from swirl.evaluation.config import EvaluateConfig
from swirl.executors import (
    ExecutorConfig,
    ShardOutput,
    WorkerLost,
    actors_that_fit,
    dispatch,
    gpus_per_actor,
    in_shards,
    run_shards,
)
from swirl.stages.base import Context, run_stage
from swirl.stages.evaluate import EvalPolicy, Evaluate
from swirl.stages.generate import Generate
from swirl.stages.ingest import Ingest
from swirl.store import Store
from swirl.tools.calculator import calculate

RAY = ExecutorConfig.model_construct(executor="ray")  # unchecked: these tests need no ray package


# ------------------------------------------------------------------------------------ scheduling
@dataclass
class FakeWorkers:
    """Workers whose calls finish in the order `finish` picks among those running; the (shard, try) pairs
    in `lose` die with their worker, and so do the `ready` calls of workers in `dead`. Records every shard
    submission as (worker, shard)."""

    size: int
    lose: set[tuple[int, int]] = field(default_factory=set)
    dead: set[int] = field(default_factory=set)
    finish: str = "newest"  # or "oldest"
    submitted: list[tuple[int, int]] = field(default_factory=list)
    tries: dict[int, int] = field(default_factory=dict)
    calls: int = 0
    most_running: int = 0

    def _call(self, worker: int, index: int, attempt: int) -> tuple[int, int, int, int]:
        self.calls += 1
        return (self.calls, worker, index, attempt)

    def submit(self, worker: int, index: int) -> tuple[int, int, int, int]:
        self.tries[index] = self.tries.get(index, 0) + 1
        self.submitted.append((worker, index))
        return self._call(worker, index, self.tries[index])

    def ready(self, worker: int) -> tuple[int, int, int, int]:
        return self._call(worker, -1, 0)

    def wait(self, running: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int]:
        self.most_running = max(self.most_running, sum(h[2] >= 0 for h in running))
        return max(running) if self.finish == "newest" else min(running)

    def result(self, handle: tuple[int, int, int, int]) -> ShardOutput | None:
        _, worker, index, attempt = handle
        if (index, attempt) in self.lose or (index < 0 and worker in self.dead):
            raise WorkerLost("killed")
        return None if index < 0 else ShardOutput(pa.table({"shard": [index]}), tokens=index)


def shards_of(outputs) -> list[int]:
    return [o.table.column("shard")[0].as_py() for o in outputs]


def test_outputs_come_in_shard_order_whatever_order_they_finish():
    workers = FakeWorkers(size=3, finish="newest")
    assert shards_of(dispatch(7, workers, window=8)) == list(range(7))
    assert sorted(i for _, i in workers.submitted) == list(range(7))  # each shard once


def test_a_shard_whose_worker_died_runs_again_and_nothing_is_lost_or_repeated():
    workers = FakeWorkers(size=2, lose={(1, 1), (4, 1)}, finish="oldest")
    assert shards_of(dispatch(6, workers, window=8)) == [0, 1, 2, 3, 4, 5]
    # oldest first: 0 on w0, 1 on w1; 0 done -> 2 on w0; 1 lost (w1 restarting) -> 2 done -> 1 again on w0;
    # w1 back -> 3 on w1; 1 done -> 4 on w0; 3 done -> 5 on w1; 4 lost (w0 restarting) -> 5 done -> 4 on w1
    assert workers.submitted == [(0, 0), (1, 1), (0, 2), (0, 1), (1, 3), (0, 4), (1, 5), (1, 4)]


def test_a_worker_that_does_not_come_back_is_not_used_again():
    workers = FakeWorkers(size=2, lose={(0, 1)}, dead={0}, finish="oldest")
    assert shards_of(dispatch(4, workers, window=8)) == [0, 1, 2, 3]
    assert [w for w, _ in workers.submitted[1:]] == [1, 1, 1, 1]  # after its loss, worker 0 gets nothing


def test_a_shard_that_kills_every_worker_stops_the_stage():
    workers = FakeWorkers(size=2, lose={(2, 1), (2, 2), (2, 3)}, finish="oldest")
    with pytest.raises(RuntimeError, match="shard 2 failed 3 times"):
        list(dispatch(4, workers, window=8))


def test_a_worker_lost_too_often_is_retired_and_then_the_stage_stops():
    # one worker, restarts=1: its second loss retires it and no worker is left
    workers = FakeWorkers(size=1, lose={(0, 1), (1, 1)})
    with pytest.raises(RuntimeError, match="every Ray actor was lost"):
        list(dispatch(3, workers, window=8, restarts=1))
    assert workers.submitted == [(0, 0), (0, 0), (0, 1)]


def test_the_window_bounds_shards_started_ahead_of_the_next_to_write():
    # newest first: shard 0 stays running while the others finish; no more than window - 1 of them start
    workers = FakeWorkers(size=4, finish="newest")
    assert shards_of(dispatch(10, workers, window=3)) == list(range(10))
    assert workers.most_running <= 3


def test_no_more_actors_start_than_the_cluster_holds():
    cluster = {"CPU": 16.0, "GPU": 2.0}
    assert actors_that_fit(4, 1.0, 0.0, cluster) == 4
    assert actors_that_fit(4, 1.0, 1.0, cluster) == 2  # one GPU each (tensor_parallel_size 1)
    assert actors_that_fit(4, 6.0, 0.0, cluster) == 2
    with pytest.raises(ValueError, match="an actor needs 1 CPUs and 4 GPUs"):
        actors_that_fit(2, 1.0, 4.0, cluster)


def test_gpus_per_actor_are_the_local_engines_tensor_parallel_degrees(tiny_model_dir):
    from swirl.engines.config import OpenAIEngineConfig

    specs = [
        EngineConfig(kind="vllm", model=tiny_model_dir, tensor_parallel_size=2),
        OpenAIEngineConfig(base_url="http://127.0.0.1:8000/v1", model="judge"),
    ]
    assert gpus_per_actor(specs, {"CPU": 8.0, "GPU": 8.0}) == 2.0
    assert gpus_per_actor(specs, {"CPU": 8.0}) == 0.0  # a CPU cluster


def test_in_shards_cuts_consecutive_runs():
    assert in_shards(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert in_shards([], 3) == []


@dataclass
class CountingJob:
    """A shard job whose runner tags each shard's rows; counts how often its engines were loaded."""

    loads: list[str] = field(default_factory=list)
    stage = "fake"

    def engine_specs(self) -> list:
        return []

    def shard_runner(self, store, engine, tools):
        self.loads.append("loaded")
        return lambda shard: ShardOutput(pa.table({"shard": [shard[0]["i"] // 2]}), tokens=len(shard))


def test_the_local_executor_loads_once_runs_shards_in_order_and_times_them(tmp_path):
    job = CountingJob()
    shards = in_shards([{"i": i} for i in range(5)], 2)
    outs = list(run_shards(ExecutorConfig(), job, Store(str(tmp_path)), shards, engine=None, tools=None))
    assert shards_of(outs) == [0, 1, 2] and [o.tokens for o in outs] == [2, 2, 1]
    assert job.loads == ["loaded"]
    assert all(o.seconds >= 0 and o.round_trip_s == o.seconds for o in outs)


def test_no_shards_load_nothing_on_either_executor(tmp_path):
    job = CountingJob()
    for ex in (ExecutorConfig(), RAY):
        assert list(run_shards(ex, job, Store(str(tmp_path)), [], engine=None, tools=None)) == []
    assert job.loads == []


# ---------------------------------------------------------------------------------------- config
def test_executor_ray_without_ray_is_one_clear_error(monkeypatch):
    import importlib.util

    from swirl.config import ConfigError, config_from_dict

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "ray" else real(name, *a, **k)
    )
    with pytest.raises(ConfigError) as e:
        config_from_dict({"run": {"executor": "ray"}})
    assert "run" in str(e.value) and "ray package is not installed" in str(e.value)
    assert "run.executor: local" in str(e.value)


def test_the_run_section_holds_the_executor_fields():
    pytest.importorskip("ray")  # the config check refuses executor ray without it
    from swirl.config import config_from_dict

    run = config_from_dict({"run": {"executor": "ray", "ray_actors": 3, "ray_address": "127.0.0.1:6379"}}).run
    assert run.executor_config == ExecutorConfig(executor="ray", ray_actors=3, ray_address="127.0.0.1:6379")
    assert config_from_dict({}).run.executor_config.executor == "local"


def test_the_executor_is_not_part_of_the_version(tiny_model_dir, tmp_path):
    store, spec, questions = ingest(str(tmp_path))
    policy = EngineConfig(kind="hf", model=tiny_model_dir)
    local = Generate(GenerateConfig(), policy, spec, questions)
    ray = Generate(GenerateConfig(), policy, spec, questions, executor=RAY)
    assert local.plan().version == ray.plan().version


# ------------------------------------------------------------------------------- on a Ray cluster
N_Q = 9  # 5 shards of 2 questions: the kill after the first shard hits a busy actor


def ingest(root: str, store_name: str = "store"):
    """The questions (one file for every store: its path is part of the dataset's identity) in a store."""
    path = os.path.join(root, "q.jsonl")
    if not os.path.exists(path):
        with open(path, "w") as f:
            for i in range(N_Q):
                f.write(
                    json.dumps({"question": f"What is {i} + {i + 1}?", "answer": f"#### {2 * i + 1}"}) + "\n"
                )
    store = Store(os.path.join(root, store_name))
    spec = DatasetSpec(name="gsm8k", format="gsm8k", path=path)
    return store, spec, run_stage(store, Ingest(spec)).ref


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


def kill_first_actor_after_first_shard(ray, stage: str):
    """A progress callback: after the first shard is written, kill actor 0 (Ray restarts it); it is running
    a shard then (each actor is handed its next shard before the driver writes)."""
    fired: list[str] = []

    def progress(p: dict) -> None:
        if fired or p.get("resuming"):
            return
        names = [n["name"] for n in ray.util.list_named_actors(all_namespaces=True)]
        (name,) = [n for n in names if n.startswith(f"swirl-{stage}-") and n.endswith("-0")]
        ray.kill(ray.get_actor(name), no_restart=False)
        fired.append(name)

    return progress, fired


def assert_same_table(local: pa.Table, ray: pa.Table, logprobs: str) -> None:
    a, b = local.to_pylist(), ray.to_pylist()
    assert sum(r["num_actions"] for r in a) > 0  # the model did act: the comparison is not of empty episodes
    assert [r["trajectory_id"] for r in b] == [r["trajectory_id"] for r in a]  # same rows, same order
    for x, y in zip(a, b, strict=True):
        for k in x:
            if k == logprobs:
                for p, q in zip(x[k], y[k], strict=True):
                    assert q == pytest.approx(p, abs=1e-5)
            else:
                assert x[k] == y[k], k


def gen_config() -> GenerateConfig:
    return GenerateConfig(
        samples_per_question=2, shard_questions=2, max_steps_math=2, max_tokens_per_step=12, temperature=1.0
    )


@pytest.mark.slow
def test_generate_on_two_ray_actors_one_killed_equals_the_local_run(
    ray_cluster, tiny_model_dir, tmp_path, caplog
):
    policy = EngineConfig(
        kind="hf", model=tiny_model_dir, dtype="float32", max_model_len=512, hf_batch_size=3
    )
    tools = {"math": calculate}
    store, spec, questions = ingest(str(tmp_path), "local")
    local = run_stage(store, Generate(gen_config(), policy, spec, questions), Context(tools=tools)).ref
    rstore, spec, rquestions = ingest(str(tmp_path), "ray")
    progress, fired = kill_first_actor_after_first_shard(ray_cluster, "generate")
    job = Generate(
        gen_config(), policy, spec, rquestions, executor=ExecutorConfig(executor="ray", ray_actors=2)
    )
    with caplog.at_level(logging.WARNING, logger="swirl.executors"):
        ref = run_stage(rstore, job, Context(tools=tools, progress=progress)).ref
    assert fired and "submitted again" in caplog.text
    assert ref.version == local.version and ref.rows == local.rows == N_Q * 2
    assert_same_table(store.read_ref(local), rstore.read_ref(ref), "action_logprobs")
    assert ref.summary["trajectories"] == N_Q * 2 and ref.summary["questions"] == N_Q


@pytest.mark.slow
def test_evaluate_on_two_ray_actors_one_killed_equals_the_local_run(ray_cluster, tiny_model_dir, tmp_path):
    policy = EvalPolicy(
        "base", EngineConfig(kind="hf", model=tiny_model_dir, dtype="float32", max_model_len=512)
    )
    cfg = EvaluateConfig(questions=N_Q, shard_questions=2, max_tokens_per_step=12)
    tools = {"math": calculate}
    store, spec, questions = ingest(str(tmp_path), "local")
    local = run_stage(store, Evaluate(cfg, gen_config(), policy, spec, questions), Context(tools=tools)).ref
    rstore, spec, rquestions = ingest(str(tmp_path), "ray")
    progress, fired = kill_first_actor_after_first_shard(ray_cluster, "evaluate")
    ray_cfg = ExecutorConfig(executor="ray", ray_actors=2)
    job = Evaluate(cfg, gen_config(), policy, spec, rquestions, executor=ray_cfg)
    ref = run_stage(rstore, job, Context(tools=tools, progress=progress)).ref
    # Actor 0 is killed and restarted mid-stage. Evaluation shards are fast enough that it may have finished
    # its shards by then (no shard was lost in 3 of 4 runs here), so a lost shard's resubmission is asserted
    # by the generate test above; here the table must not change whether or not one was lost.
    assert fired
    assert ref.version == local.version and ref.rows == local.rows == N_Q
    assert_same_table(store.read_ref(local), rstore.read_ref(ref), "")
    assert ref.summary["accuracy_rule"] == local.summary["accuracy_rule"]


@pytest.mark.slow
def test_an_actor_that_cannot_load_its_engine_stops_the_stage_with_the_reason(ray_cluster, tmp_path):
    store, spec, questions = ingest(str(tmp_path))
    missing = str(tmp_path / "no-such-model")
    job = Generate(
        gen_config(),
        EngineConfig(kind="hf", model=missing),
        spec,
        questions,
        executor=ExecutorConfig(executor="ray", ray_actors=2),
    )
    with pytest.raises(RuntimeError, match="a Ray actor could not start") as e:
        run_stage(store, job, Context(tools={"math": calculate}))
    assert "no-such-model" in str(e.value)
    assert not ray_cluster.util.list_named_actors()  # the stage's actors are gone
