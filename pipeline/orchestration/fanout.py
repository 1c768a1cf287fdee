"""One DVC pipeline run spread over a Prefect work pool.

`distill-pipeline` with `stage_deployment` set (`distill-stage/distill-stage`) runs each stage as its own
`distill-stage` flow run, started as soon as the stages it depends on are done, so that idle workers run
independent stages (the two-step students, distil3, the BiLSTMs) side by side. A stage flow run works in a
fresh clone of the repository at the run's commit, never in a workspace another run uses: it writes the
run's params.yaml and dvc.lock there, pulls the outputs of the stages it depends on from the DVC remote,
runs `dvc repro --single-item`, pushes its outputs and returns its dvc.lock entry with the small files
DVC does not cache (metrics, plots, report.md). The orchestrating run merges the entries into dvc.lock in
dependency order and pulls the outputs into its workspace: what a serial `dvc repro` leaves.

A failed stage fails only the stages that depend on it; the others go on, and the run fails at the end
naming them. A flow run whose worker dies (it crashes, or its heartbeats stop: Prefect emits one every
PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds) is started again, and another worker picks it up.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dvc.utils.serialize import dump_yaml, dumps_yaml, load_yaml
from prefect import flow, get_run_logger

from pipeline.orchestration.workspace import (PATH_PARAMS, InvalidInput, StageFailed, current_params, repro_stage,
                                              run_dvc, stage_graph)
from pipeline.params.config import PARAMS_FILE, flatten

LOCK_FILE = "dvc.lock"
# files a run may change in the workspace it starts from; anything else must be committed first, because
# the clones check out the commit
RUN_FILES = (PARAMS_FILE, LOCK_FILE, "reports/")


# ---------------------------------------------------------------- one stage, in its own clone
def read_lock(repo: Path) -> dict[str, Any]:
    """dvc.lock as DVC reads it (YAML 1.2: 1e-05 is a number, where PyYAML would read a string)."""
    path = repo / LOCK_FILE
    lock = load_yaml(str(path)) if path.is_file() else None
    return lock or {"schema": "2.0", "stages": {}}


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise StageFailed(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()[-1000:]}")
    return proc.stdout


def write_files(root: Path, files: dict[str, str]) -> None:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(base64.b64decode(data))


def make_clone(source: str, commit: str, place: Path, params_text: str, lock_text: str, files: dict[str, str],
               remote: str, outside: dict[str, str]) -> Path:
    """A clone of `source` at `commit` under `place`, with the run's params.yaml, dvc.lock and uncached outputs
    so far (`files`), and `remote` (a URL) as its default DVC remote. `outside` maps the leading part of each
    relative path param that leaves the repository ("../shared") to where it resolves in the orchestrating
    workspace; each is linked beside the clone, so the params (and so the dvc.lock entries) stay as they are."""
    depth = max((Path(p).parts.count("..") for p in outside), default=0)
    clone = place.joinpath(*["up"] * max(depth - 1, 0), "repo")
    clone.parent.mkdir(parents=True, exist_ok=True)
    _git(place, "clone", "-q", "--no-checkout", source, str(clone))
    _git(clone, "checkout", "-q", commit)
    (clone / PARAMS_FILE).write_text(params_text, encoding="utf-8")
    if lock_text:
        (clone / LOCK_FILE).write_text(lock_text, encoding="utf-8")
    write_files(clone, files)
    for prefix, target in outside.items():
        link = Path(os.path.normpath(clone / prefix))
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target, target_is_directory=Path(target).is_dir())
    run_dvc(clone, "remote", "add", "--local", "--default", "run", remote)
    return clone


def uncached_files(clone: Path, stage: str) -> dict[str, str]:
    """The stage's outputs DVC keeps out of its cache (they go to git), as {path: base64 bytes}."""
    from dvc.repo import Repo

    files = {}
    with Repo(str(clone)) as repo:
        (target,) = [s for s in repo.index.stages if s.name == stage]
        for out in target.outs:
            path = clone / out.def_path
            if not out.use_cache and path.is_file():
                files[out.def_path] = base64.b64encode(path.read_bytes()).decode("ascii")
    return files


@flow(name="distill-stage", persist_result=True, log_prints=True)
def distill_stage(source: str, commit: str, stage: str, params_text: str, lock_text: str, remote: str,
                  files: dict[str, str] | None = None, outside: dict[str, str] | None = None, force: bool = False,
                  workdir: str | None = None) -> dict[str, Any]:
    """Run one stage of a fanned-out pipeline run in a fresh clone (under `workdir`, else $DISTILL_WORKDIR,
    else the system's temporary folder); returns {"status", "lock", "files", "clone"}."""
    log = get_run_logger()
    root = Path(workdir or os.environ.get("DISTILL_WORKDIR") or tempfile.gettempdir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    place = Path(tempfile.mkdtemp(prefix=stage.replace("@", "-") + "-", dir=root))
    try:
        clone = make_clone(source, commit, place, params_text, lock_text, files or {}, remote, outside or {})
        log.info(f"{stage}: clone of {commit[:10]} in {clone}")
        upstream = stage_graph(clone)[stage]
        run_dvc(clone, "pull", "--allow-missing", *upstream, stage, log=log)
        status = repro_stage(stage, str(clone), force)
        run_dvc(clone, "push", stage, log=log)
        lock = read_lock(clone)["stages"][stage]
        return {"status": status, "lock": lock, "files": uncached_files(clone, stage), "clone": str(clone)}
    finally:
        shutil.rmtree(place, ignore_errors=True)


# ---------------------------------------------------------------- the run that fans out
def check_committed(repo: Path) -> str:
    """The commit the clones check out; InvalidInput naming the files when tracked files other than the run's
    own (params.yaml, dvc.lock, reports/) have uncommitted changes the clones would not see."""
    try:
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no").splitlines()
    except StageFailed as exc:
        raise InvalidInput(f"{repo} must be a git repository to fan a run out over workers: {exc}") from None
    dirty = [line[3:] for line in dirty if not line[3:].startswith(RUN_FILES)]
    if dirty:
        raise InvalidInput(f"commit these changes first, the workers run the commit: {', '.join(dirty)}")
    return _git(repo, "rev-parse", "HEAD").strip()


def outside_paths(repo: Path) -> dict[str, str]:
    """{"../shared": "/abs/shared"} for each relative path param that leaves the repository."""
    flat = flatten(current_params(repo))
    found = {}
    for key in PATH_PARAMS:
        path = Path(str(flat.get(key) or ""))
        if key in flat and not path.is_absolute() and ".." in path.parts:
            ups = 0
            while ups < len(path.parts) and path.parts[ups] == "..":
                ups += 1
            prefix = Path(*path.parts[:ups + 1])
            target = (repo / prefix).resolve()
            if not target.is_relative_to(repo):
                found[str(prefix)] = str(target)
    return found


def changed_stages(repo: Path) -> set[str]:
    import json

    return set(json.loads(run_dvc(repo, "status", "--json") or "{}"))


def worker_gone(client, run, lost_after_s: float) -> bool:
    """Whether a running or pending flow run has shown no sign of life (a heartbeat event, else its start) for
    lost_after_s; if so it is marked Crashed, so that a late report from it changes nothing."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.states import Crashed

    if not (run.state.is_running() or run.state.is_pending()):
        return False
    page = client.read_events(EventFilter(event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                                          resource=EventResourceFilter(id=[f"prefect.flow-run.{run.id}"])), limit=1)
    seen = max(t for t in [e.occurred for e in page.events] + [run.start_time, run.state.timestamp] if t is not None)
    if datetime.now(timezone.utc) - seen < timedelta(seconds=lost_after_s):
        return False
    client.set_flow_run_state(run.id, Crashed(message="no heartbeat: its worker is gone"), force=True)
    return True


def is_url(remote: str) -> bool:
    return "://" in remote or os.sep in remote


def shared_remote(repo: Path, remote: str | None) -> tuple[str, str]:
    """(name, URL) of the DVC remote the workers share: `remote` as a name the repository configures, or a URL
    (registered in this workspace's .dvc/config.local as "fanout"), or else the repository's default remote."""
    from dvc.repo import Repo

    if remote and is_url(remote):
        run_dvc(repo, "remote", "add", "--local", "--force", "fanout", remote)
        remote = "fanout"
    with Repo(str(repo)) as dvc_repo:
        config = dvc_repo.config
        name = remote or config["core"].get("remote")
        if not name or name not in config["remote"]:
            raise InvalidInput(f"fanning a run out needs a DVC remote the workers share: {name or 'none'} is not "
                               f"configured; pass remote=<url or name>, or run `dvc remote add -d <name> <url>`")
        return name, str(config["remote"][name]["url"])


FAILED = ("failed", "not run")


def next_stages(order: list[str], graph: dict[str, list[str]], current: list[str], results: dict[str, str],
                running: dict[str, Any]) -> list[str]:
    """The stages to start now: those whose upstream stages (within `order`) are all done. Settles in
    `results` the stages that need no run: "not run" under a failed upstream stage, "up to date" where the
    workspace had the stage current and nothing upstream changed."""
    ready = []
    for stage in order:
        if stage in results or stage in running:
            continue
        upstream = [u for u in graph[stage] if u in order]
        failed = [u for u in upstream if results.get(u, "").startswith(FAILED)]
        if failed:
            results[stage] = f"not run: {', '.join(failed)} failed"
        elif all(u in results for u in upstream):
            if stage in current and all(results[u] == "up to date" for u in upstream):
                results[stage] = "up to date"
            else:
                ready.append(stage)
    return ready


def fan_out(repo: Path, order: list[str], force: bool, remote: str | None, stage_deployment: str, retries: int,
            lost_after_s: float, git_source: str | None = None, poll_s: float = 2.0) -> dict[str, str]:
    """Run the stages `order` names (dependency order) as distill-stage flow runs on the pool; returns
    {stage: "ran" | "up to date" | "failed: ..." | "not run: ..."}. Raises at the end if any failed."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    log = get_run_logger()
    commit = check_committed(repo)
    remote, url = shared_remote(repo, remote)
    graph = stage_graph(repo)
    changed = set(order) if force else changed_stages(repo)
    current = [s for s in order if s not in changed]
    files: dict[str, str] = {}  # the outputs DVC does not cache (some are deps: evaluate reads the histories)
    if current:  # what this workspace already has, the clones pull instead of recomputing
        run_dvc(repo, "push", "--remote", remote, *current, log=log)
        for stage in current:
            files.update(uncached_files(repo, stage))
    lock = read_lock(repo)
    had = list(lock["stages"])
    common = {"source": git_source or str(repo), "commit": commit, "params_text": (repo / PARAMS_FILE).read_text(encoding="utf-8"),
              "remote": url, "outside": outside_paths(repo), "force": force}

    results: dict[str, str] = {}
    running: dict[str, tuple[Any, int]] = {}  # stage -> (flow run, attempt)
    started: set[str] = set()

    def start(stage: str, attempt: int) -> None:
        lock_text = dumps_yaml(lock)
        run = run_deployment(stage_deployment, timeout=0, flow_run_name=f"{stage} #{attempt}",
                             parameters={**common, "stage": stage, "lock_text": lock_text, "files": files})
        running[stage] = (run, attempt)
        started.add(stage)
        log.info(f"{stage}: started flow run {run.name} ({run.id})")

    with get_client(sync_client=True) as client:
        while True:
            for stage in next_stages(order, graph, current, results, running):
                start(stage, 1)
            if not running:
                break
            time.sleep(poll_s)
            for stage, (run, attempt) in list(running.items()):
                run = client.read_flow_run(run.id)
                state = run.state
                lost = worker_gone(client, run, lost_after_s)
                if state.is_completed():
                    outcome = state.result()
                    lock["stages"][stage] = outcome["lock"]
                    files.update(outcome["files"])
                    write_files(repo, outcome["files"])
                    results[stage] = outcome["status"]
                    del running[stage]
                elif lost or state.is_crashed() or state.is_cancelled():
                    del running[stage]
                    why = "lost its worker" if lost else state.name.lower()
                    if attempt <= retries:
                        log.warning(f"{stage}: flow run {run.name} {why}; starting it again")
                        start(stage, attempt + 1)
                    else:
                        results[stage] = f"failed: {why} {attempt} times"
                elif state.is_final():  # failed: the stage's own error, already retried where transient
                    del running[stage]
                    results[stage] = f"failed: {state.message or state.name}"
                    log.error(f"{stage}: {results[stage]}")

    # as `dvc repro` writes it: entries it had keep their place, new ones follow in dependency order
    lock["stages"] = {s: lock["stages"][s] for s in [*had, *(s for s in order if s not in had)]
                      if s in lock["stages"]}
    dump_yaml(repo / LOCK_FILE, lock)
    done = [s for s in order if s in started and results[s] in ("ran", "up to date")]
    if done:
        run_dvc(repo, "pull", "--remote", remote, *done, log=log)
    bad = {s: r for s, r in results.items() if r.startswith(FAILED)}
    if bad:
        raise StageFailed("stages did not complete:\n" + "\n".join(f"  {s}: {r}" for s, r in bad.items()))
    return {s: results[s] for s in order}
