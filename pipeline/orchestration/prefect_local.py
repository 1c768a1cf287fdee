"""A Prefect server and process workers on this machine, for the tests, the pool benchmark and the README
check: `with local_server(home) as env:` starts `prefect server start` on a free port of 127.0.0.1 with
its own home and database (analytics off), and stops it on exit; `deploy` creates the deployments of a
repository's prefect.yaml; `start_worker` adds a worker to a pool."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_server(home: Path, start_timeout_s: float = 120) -> Iterator[dict[str, str]]:
    """Yields the environment that points Prefect at the server (PATH leads to this interpreter's tools)."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               DVC_NO_ANALYTICS="1", PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_API_HOST="127.0.0.1",
               PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_ENABLED="false")
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + start_timeout_s
            while not _healthy(port):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
                time.sleep(1)
            yield env
        finally:
            stop(proc)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


POOL, STAGE_POOL = "distill", "distill-stages"  # prefect.yaml's pools: runs that drive others; stages


def deploy(env: dict[str, str], repo: Path) -> str:
    """`prefect deploy --all` from the repository root, as the README says (creating the pools first)."""
    env = dict(env, PWD=str(repo))  # prefect.yaml runs the flows in {{ $PWD }}
    for pool in (POOL, STAGE_POOL):
        subprocess.run([PREFECT, "work-pool", "create", pool, "--type", "process", "--overwrite"], env=env,
                       check=True, capture_output=True)
    out = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=repo, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"prefect deploy --all failed in {repo}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def start_worker(env: dict[str, str], pool: str = STAGE_POOL, workdir: Path | None = None, limit: int | None = None,
                 heartbeat_s: int | None = None, log: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """A process worker on `pool`, started in `cwd`; `workdir` is where its fanned-out stages make their clones
    ($DISTILL_WORKDIR), `limit` how many flow runs it runs at once, `heartbeat_s` how often those report."""
    env = dict(env)
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        env["DISTILL_WORKDIR"] = str(workdir)
    if heartbeat_s is not None:
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(heartbeat_s)
    out = open(log, "w") if log is not None else subprocess.DEVNULL
    return subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process",
                             *(["--limit", str(limit)] if limit else [])], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=cwd)


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop a process and everything it started at once, as a machine that dies would."""
    import psutil

    try:
        tree = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        tree = []
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def stop(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """Ask a worker or server to stop; kill it (and what it started) if it has not within grace_s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:  # a loaded machine can make a graceful shutdown slow
            kill_tree(proc)
