"""A throwaway Prefect control panel in subprocesses: a Prefect server on 127.0.0.1 (its own PREFECT_HOME) and
`swirl serve` on a config, driven through the REST API as the UI's Run form drives it.

Used by scripts/screenshots.py and the deployed end-to-end test (tests/e2e/test_deployed_iterate.py):

    with local_prefect(work_dir, cwd=ROOT) as server:
        deployments = server.serve("configs/quickstart.yaml")      # waits for every deployment it serves
        run = server.run(deployments["swirl_iterate"], {"rounds": 2}, timeout=3600)

Every process it starts logs to `<work_dir>/<name>.log` and is stopped (its whole process group) on exit; a
wait that times out raises TimeoutError with the end of each log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from swirl.system import free_port

FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def start_temporary_server() -> None:
    """Start this process's temporary Prefect server now (when no PREFECT_API_URL is set), holding a lock in
    PREFECT_HOME while it starts. Two `swirl run` at once on one machine share PREFECT_HOME, and their
    temporary servers setting up its SQLite database at the same time fail (`duplicate column name`); with the
    lock the second starts once the first has set the database up. Prefect's client finds the running server
    (`SubprocessASGIServer` is one instance per process)."""
    import fcntl

    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    home = str(PREFECT_HOME.value())
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "swirl-server-start.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        SubprocessASGIServer().start()


def start_process(cmd: list[str], env: dict[str, str], log: str, cwd: str) -> subprocess.Popen:
    """`cmd` in its own session (so `stop_process` ends its children too), stdout and stderr to `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(p: subprocess.Popen) -> None:
    """SIGTERM to the process group, SIGKILL after 30 s."""
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], Any], timeout: float, logs: Sequence[str] = ()) -> Any:
    """`check()`'s first truthy result, polled every 2 s (an HTTP error counts as not yet); TimeoutError with
    the end of each of `logs` after `timeout` seconds."""
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
            if got:
                return got
        except httpx.HTTPError:
            pass
        time.sleep(2)
    tails = "\n".join(f"--- {p}\n{_tail(p)}" for p in logs)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}\n{tails}")


def _tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError as e:
        return f"({e})"


@dataclass
class LocalPrefect:
    """A running Prefect server: its API (`http`, a client on `api`), its UI address, and the environment
    (PREFECT_API_URL set) that its clients, `swirl serve` and other processes started here, run with."""

    work: str
    cwd: str
    api: str
    ui: str
    env: dict[str, str]
    http: Any  # httpx.Client
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        """Start `cmd` beside the server (logged to `<work>/<name>.log`, stopped with the server)."""
        log = os.path.join(self.work, f"{name}.log")
        self.logs.append(log)
        self.procs.append(start_process(cmd, self.env, log, self.cwd))
        return self.procs[-1]

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        return wait_for(what, check, timeout, self.logs)

    def serve(self, config: str, timeout: float = 180) -> dict[str, dict[str, Any]]:
        """`swirl serve --config <config>`, then wait until *every* deployment it serves is registered (it
        registers them one after another); returns {flow name: deployment} as the API gives them."""
        from flows.serve import served_deployments

        self.start("serve", [sys.executable, "-m", "flows.cli", "serve", "--config", config])
        out = {}
        for d in served_deployments(config):

            def registered(d: Any = d) -> Any:
                r = self.http.get(f"/deployments/name/{d.full_name}")
                return r.json() if r.status_code == 200 else None

            out[d.flow_name] = self.wait(f"the {d.full_name} deployment", registered, timeout)
        return out

    def run(self, deployment: dict[str, Any], parameters: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Create a flow run of `deployment` with `parameters` (as the Run form does) and wait until it ends;
        returns the flow run (its `state.type` says how it ended)."""
        path = f"/deployments/{deployment['id']}/create_flow_run"
        run_id = self.http.post(path, json={"parameters": parameters}).json()["id"]

        def finished() -> Any:
            fr = self.http.get(f"/flow_runs/{run_id}").json()
            return fr if fr["state"]["type"] in FINAL_STATES else None

        return self.wait(f"flow run {run_id} of {deployment['name']}", finished, timeout)


@contextmanager
def local_prefect(work: str, cwd: str, timeout: float = 180) -> Iterator[LocalPrefect]:
    """A Prefect server on a free port of 127.0.0.1 with PREFECT_HOME under `work`; processes start in `cwd`
    (also put on PYTHONPATH, so `python -m flows.cli` finds the project). Everything started is stopped on
    exit."""
    import httpx

    os.makedirs(work, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": os.path.join(work, "prefect"),
        "PREFECT_API_URL": api,
        "PYTHONPATH": cwd,
    }
    env.pop("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", None)
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    http = httpx.Client(base_url=api, timeout=30)
    server = LocalPrefect(work, cwd, api, f"http://127.0.0.1:{port}", env, http)
    try:
        server.start("server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)])
        server.wait("the Prefect server", lambda: http.get("/health").status_code == 200, timeout)
        yield server
    finally:
        for p in reversed(server.procs):
            stop_process(p)
        http.close()
