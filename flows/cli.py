"""The `swirl` command line.

swirl run CONFIG [--stages prepare,ingest]   run one round (a Prefect flow, tracked in MLflow)
swirl eval --config CONFIG [--adapter P]      evaluate the base policy (and adapters) only, reusing the store
swirl compare RUN [RUN ...] --config CONFIG   accuracy of several rounds side by side, and their config diffs
swirl validate CONFIG                         check a config and print it resolved
swirl make-tiny-model PATH                    build the tiny offline model + tokenizer
swirl make-model NAME PATH [--overwrite]      convert a pip-packaged model (smollm2-135m-instruct) to a folder
swirl store ls [--config CONFIG | --root R]  list the complete stage outputs in a store
swirl ui mlflow|prefect [--config CONFIG]     start a UI bound to 127.0.0.1
swirl show trajectories --config CONFIG       print a few generated trajectories as transcripts
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.results import RoundResult

# Quiet, offline-friendly defaults; an explicit environment variable always wins. tests/conftest.py sets
# them too (this module imports nothing that reads the environment).
ENV_DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "VLLM_NO_USAGE_STATS": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "TOKENIZERS_PARALLELISM": "false",
    # swirl's own log lines (a run waiting for another run's lease, judge shards) reach the terminal and the
    # Prefect UI like the tasks' lines
    "PREFECT_LOGGING_EXTRA_LOGGERS": "swirl",
}


def _console() -> Any:
    from rich.console import Console

    return Console()


def _error(kind: str, message: object) -> None:
    """One line on stderr, never wrapped: `<kind>: <message>` (the message names the file or field and the
    fix)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]{kind}[/] {escape(str(message))}", highlight=False)


def _load(path: str) -> Any:
    from swirl.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        _error("config error", e)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    from swirl.config import ConfigError, check_config_files, with_stages

    cfg = _load(args.config)
    try:
        cfg = with_stages(
            cfg, args.stages.split(",") if args.stages is not None else None, source=args.config
        )
        check_config_files(cfg, source=args.config)  # again for --stages: before the Prefect server starts
    except ConfigError as e:
        _error("config error", e)
        return 2
    from flows.local_server import start_temporary_server
    from flows.round import swirl_round
    from swirl.data.loaders import DataError

    start_temporary_server()
    try:
        result = swirl_round(cfg)
    except DataError as e:  # bad input: retrying cannot help; one line that names the field and the fix
        _error("data error", e)
        return 2
    _print_round(result)
    return 0


def _print_round(result: RoundResult) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"swirl round {result.run!r} ({result.seconds} s)")
    for col in ("stage", "version", "rows", "status", "seconds"):
        t.add_column(col, justify="right" if col in ("rows", "seconds") else "left")
    for name, o in result.stages.items():
        t.add_row(name, o.version, str(o.rows), "cached" if o.cached else "computed", f"{o.seconds:.2f}")
    con.print(t)
    ev = result.stages.get("eval")
    if ev and ev.results:
        e = Table(title="evaluation (rule-graded accuracy, 95% Wilson interval)")
        for col in ("dataset", "policy", "n", "accuracy", "interval", "judge"):
            e.add_column(col, justify="left" if col in ("dataset", "policy") else "right")
        for key, r in sorted(ev.results.items(), key=lambda kv: kv[0].split("@")[::-1]):
            policy, dataset = key.split("@", 1)
            judge = "" if r.accuracy_judge is None else f"{r.accuracy_judge:.3f}"
            e.add_row(
                dataset,
                policy,
                str(r.questions),
                f"{r.accuracy_rule:.3f}",
                f"[{r.accuracy_rule_low:.3f}, {r.accuracy_rule_high:.3f}]",
                judge,
            )
        con.print(e)
        con.print(
            f"evaluation report (gains vs base, McNemar p, cross-task heatmap): {ev.report}",
            soft_wrap=True,
        )
    con.print(f"store: {result.store}", soft_wrap=True)
    con.print(
        f"MLflow run {result.mlflow_run_id} in {result.mlflow_uri} (open it: swirl ui mlflow --config "
        "CONFIG)",
        soft_wrap=True,
    )


def cmd_eval(args: argparse.Namespace) -> int:
    from flows.evaluate import AdapterEntry, evaluation_config
    from swirl.config import ConfigError

    cfg = _load(args.config)
    adapters = []
    for i, spec in enumerate(args.adapter or []):
        name, _, path = spec.rpartition("=") if "=" in spec else (f"adapter{i + 1}", "", spec)
        adapters.append(AdapterEntry(name=name, path=path))
    datasets = args.datasets.split(",") if args.datasets else None
    try:  # checked before any flow starts; the flow resolves the same config
        evaluation_config(cfg, adapters, datasets, args.trained, source=args.config)
    except ConfigError as e:
        _error("config error", e)
        return 2
    from flows.evaluate import swirl_evaluate
    from flows.local_server import start_temporary_server

    start_temporary_server()
    _print_round(swirl_evaluate(args.config, adapters, datasets, args.trained))
    return 0


def cmd_iterate(args: argparse.Namespace) -> int:
    from flows.iterate import check_iteration, swirl_iterate
    from flows.parameters import Knobs
    from swirl.config import ConfigError
    from swirl.data.loaders import DataError

    cfg = _load(args.config)  # a bad file: one line, exit 2
    try:
        check_iteration(cfg, args.rounds, args.more_rounds)  # before any flow starts
        from flows.local_server import start_temporary_server

        start_temporary_server()
        result = swirl_iterate(
            args.config,
            rounds=args.rounds,
            more_rounds=args.more_rounds,
            min_gain=args.min_gain,
            knobs=Knobs(),
        )
    except (ConfigError, DataError) as e:
        _error("error", e)
        return 2
    from rich.markdown import Markdown

    from flows.iterate import rounds_markdown

    con = _console()
    con.print(Markdown(rounds_markdown(result.mlflow_run_name, result.rounds, result.stopped)))
    con.print(f"MLflow: {result.mlflow_url} (swirl ui mlflow --config {args.config})", soft_wrap=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from flows.serve import serve_all

    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            _error(
                "serve",
                "needs a Prefect server: start one (swirl ui prefect) and run "
                "`.venv/bin/prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`",
            )
            return 2
    _load(args.config)
    serve_all(args.config, args.every)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from flows.compare import compare_runs

    uri = _load(args.config).run.mlflow_uri if args.config else args.tracking_uri
    try:
        tables = compare_runs(uri, args.runs, experiment=args.experiment)
    except LookupError as e:
        _error("compare", e)
        return 2
    con = _console()
    for t in tables:
        con.print(t)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    cfg = _load(args.config)
    _console().print(f"[green]ok[/] {args.config}")
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return 0


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from swirl.models.tiny import build_tiny_model

    path = build_tiny_model(args.path, vocab_size=args.vocab_size, seed=args.seed, overwrite=args.overwrite)
    _console().print(f"[green]tiny model ready[/] at {path}")
    return 0


def cmd_make_model(args: argparse.Namespace) -> int:
    from swirl.models.packaged import convert_packaged_model, read_stamp

    path = convert_packaged_model(args.name, args.path, overwrite=args.overwrite)
    stamp = read_stamp(path) or {}
    _console().print(
        f"[green]{args.name} ready[/] at {path} ({stamp.get('parameters', 0) / 1e6:.1f}M parameters)"
    )
    return 0


def cmd_store_ls(args: argparse.Namespace) -> int:
    import datetime

    from rich.table import Table

    from swirl.store import Store

    root = _load(args.config).run.store_root if args.config else args.root
    if not root:
        raise SystemExit("give --config CONFIG or --root STORE_ROOT")
    t = Table(title=f"store {root}")
    for col in ("stage", "version", "dataset", "table", "rows", "created"):
        t.add_column(col)
    for m in Store(root).versions(args.stage):
        dataset = str((m.get("summary") or {}).get("dataset") or "")
        if args.dataset and dataset != args.dataset:
            continue
        created = datetime.datetime.fromtimestamp(m.get("created_at", 0)).strftime("%Y-%m-%d %H:%M:%S")
        table = m.get("table") or "(files)"
        t.add_row(m["stage"], m["version"], dataset, table, str(m.get("rows", "")), created)
    _console().print(t)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from swirl.store import Store
    from swirl.viewer import print_rich

    cfg = _load(args.config) if args.config else None
    root = cfg.run.store_root if cfg else args.root
    if not root:
        raise SystemExit("give --config CONFIG or --root STORE_ROOT")
    store = Store(root)
    mine = config_generate_versions(cfg, store) if cfg and args.version is None else None
    found = [
        m
        for m in store.versions("generate")
        if (args.version is None or m["version"] == args.version)
        and (mine is None or m["version"] in mine)
        and (args.dataset is None or m["summary"].get("dataset") == args.dataset)
    ]
    if not found:
        _console().print(
            f"[red]no complete generate output in {root}[/] for this config and filters; run the "
            "generate stage first"
        )
        return 1
    m = found[0]  # newest
    table = store.read("generate", m["version"])
    if args.question:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table["question_id"], args.question))
    rows = table.slice(0, args.n).to_pylist()
    _console().print(
        f"generate/{m['version']} ({m['summary'].get('dataset')}): {len(rows)} of {table.num_rows} "
        "trajectories"
    )
    print_rich(rows, _console())
    return 0


def config_generate_versions(cfg: Any, store: Any) -> set[str]:
    """The versions of the generate outputs this config produces (planned from the store's complete
    upstream outputs; nothing is computed), so `swirl show` shows this config's trajectories, not the newest
    of any."""
    from swirl.episodes import tool_kind
    from swirl.stages.corpus import Corpus
    from swirl.stages.generate import Generate
    from swirl.stages.ingest import Ingest

    def stored(job: Any) -> Any:
        try:
            plan = job.plan()
        except ValueError:  # an input is missing: this config has no such output yet
            return None
        return store.ref(plan.stage, plan.version) if store.is_complete(plan.stage, plan.version) else None

    out = set()
    for spec in cfg.generate_datasets() if cfg.policy else ():
        questions, corpus = stored(Ingest(spec)), None
        if questions is not None and tool_kind(spec) == "search":
            split = stored(Ingest(spec.whole_split()))
            corpus = stored(Corpus(split, cfg.search, spec.name)) if split is not None else None
            if corpus is None:
                continue
        if questions is not None:
            out.add(Generate(cfg.generate, cfg.policy, spec, questions, corpus, cfg.search).plan().version)
    return out


def own_tool(name: str) -> str:
    """The `name` command installed beside this Python (the project's venv), so `swirl ui` works without
    activating it; else whatever PATH finds."""
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else (shutil.which(name) or name)


def cmd_ui(args: argparse.Namespace) -> int:
    if args.which == "mlflow":
        uri = _load(args.config).run.mlflow_uri if args.config else args.backend
        cmd = [
            own_tool("mlflow"),
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
        ]
    else:
        cmd = [own_tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(args.port)]
    _console().print("running: " + " ".join(cmd))
    return subprocess.call(cmd)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="swirl", description="SWiRL / OREO pipeline: Prefect flows + MLflow tracking."
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_pipeline_commands(sub)
    _add_model_commands(sub)
    _add_inspect_commands(sub)
    return p


def _add_pipeline_commands(sub: argparse._SubParsersAction) -> None:
    """run, eval, iterate, serve, compare: the flows and their results."""
    r = sub.add_parser("run", help="run one round of the pipeline on a config")
    r.add_argument("config", help="YAML run config, e.g. configs/quickstart.yaml")
    r.add_argument("--stages", help="comma-separated subset of stages to run (default: the config's stages)")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("eval", help="evaluate the policy (and adapters) on the config's evaluation datasets")
    e.add_argument("--config", required=True, help="YAML run config")
    e.add_argument(
        "--adapter",
        action="append",
        metavar="[NAME=]PATH",
        help="also evaluate this LoRA adapter (repeatable); NAME labels it in tables and metrics",
    )
    e.add_argument("--datasets", help="comma-separated evaluation datasets (default: every non-train split)")
    e.add_argument(
        "--trained",
        action="store_true",
        help="also evaluate the adapter this config trains (runs or reuses the round's stages)",
    )
    e.set_defaults(func=cmd_eval)

    it = sub.add_parser("iterate", help="rounds, each training the previous round's adapter further")
    it.add_argument("config", help="YAML run config, e.g. configs/quickstart.yaml")
    it.add_argument(
        "--rounds", type=int, default=2, help="rounds the chain should have (finished ones are kept)"
    )
    it.add_argument("--more-rounds", type=int, help="run this many rounds after the last finished one")
    it.add_argument("--min-gain", type=float, help="stop when a round gains less mean accuracy than this")
    it.set_defaults(func=cmd_iterate)

    sv = sub.add_parser("serve", help="serve the round, iterate and evaluate deployments from this process")
    sv.add_argument("--config", default="configs/quickstart.yaml", help="the deployments' base config")
    sv.add_argument("--every", type=float, help="schedule one more round of swirl_iterate every N minutes")
    sv.set_defaults(func=cmd_serve)

    c = sub.add_parser("compare", help="accuracy tables of several rounds side by side (from MLflow)")
    c.add_argument(
        "runs", nargs="+", help="MLflow run ids or run names of rounds (a name means its newest run)"
    )
    c.add_argument("--config", help="run config whose MLflow backend to read")
    c.add_argument("--tracking-uri", default="sqlite:///runs/quickstart/mlflow.db")
    c.add_argument("--experiment", help="only look up run names in this experiment")
    c.set_defaults(func=cmd_compare)


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    """validate, make-tiny-model, make-model: configs and local models."""
    v = sub.add_parser("validate", help="validate a config and print it with defaults filled in")
    v.add_argument("config")
    v.set_defaults(func=cmd_validate)

    m = sub.add_parser(
        "make-tiny-model", help="build a tiny random Qwen2 model with a locally trained tokenizer"
    )
    m.add_argument("path")
    m.add_argument("--vocab-size", type=int, default=2048)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--overwrite", action="store_true")
    m.set_defaults(func=cmd_make_tiny_model)

    mm = sub.add_parser(
        "make-model",
        help="convert a pip-packaged GGUF model (smollm2-135m-instruct) into a "
        "transformers/vLLM folder (float32 safetensors); cached",
    )
    mm.add_argument("name", help="smollm2-135m-instruct")
    mm.add_argument("path")
    mm.add_argument("--overwrite", action="store_true")
    mm.set_defaults(func=cmd_make_model)


def _add_inspect_commands(sub: argparse._SubParsersAction) -> None:
    """store ls, show, ui: look at the store and the UIs."""
    s = sub.add_parser("store", help="inspect the versioned store")
    ssub = s.add_subparsers(dest="store_command", required=True)
    ls = ssub.add_parser("ls", help="list complete stage outputs")
    ls.add_argument("--config")
    ls.add_argument("--root")
    ls.add_argument("--stage")
    ls.add_argument("--dataset", help="only the outputs of this dataset")
    ls.set_defaults(func=cmd_store_ls)

    sh = sub.add_parser("show", help="print stage outputs readably")
    sh.add_argument("what", choices=["trajectories"])
    sh.add_argument("--config")
    sh.add_argument("--root")
    sh.add_argument("--dataset", help="dataset name (default: the newest output of any dataset)")
    sh.add_argument("--version", help="a generate version (default: the newest)")
    sh.add_argument("--question", help="only this question id")
    sh.add_argument("-n", type=int, default=3, help="how many trajectories")
    sh.set_defaults(func=cmd_show)

    u = sub.add_parser("ui", help="start the MLflow or Prefect UI on 127.0.0.1")
    u.add_argument("which", choices=["mlflow", "prefect"])
    u.add_argument("--config", help="run config whose MLflow backend to open")
    u.add_argument("--backend", default="sqlite:///runs/quickstart/mlflow.db")
    u.add_argument("--port", type=int, default=None)
    u.set_defaults(func=cmd_ui)


def main(argv: list[str] | None = None) -> int:
    for k, v in ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    args = build_parser().parse_args(argv)
    if getattr(args, "port", "unset") is None:
        args.port = 5000 if args.which == "mlflow" else 4200
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
