"""What the flows do to a DVC workspace: run dvc (its output in the run log, its failures classified as
bad input or a transient failure), read the stage graph, read and edit params; and the two Prefect tasks
every flow shares, one stage and a remote sync. The pipeline flow (pipeline/orchestration/flows.py) and the fan-out
(pipeline/orchestration/fanout.py) both stand on it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.tasks import exponential_backoff

from pipeline.artifacts import atomic_path
from pipeline.errors import ConfigError
from pipeline.params.config import PARAMS_FILE, Params, read_yaml
from pipeline.params.profile import edit_params

VALIDATION_EXIT = 2  # what a stage exits with on a PipelineError (pipeline/orchestration/stage.py)


class InvalidInput(RuntimeError):
    """Bad params or data: retrying cannot help."""


class StageFailed(RuntimeError):
    """A stage failed for another reason (killed, out of memory, a flaky file system): retried."""


def _environment(repo: Path) -> dict[str, str]:
    # dvc.yaml runs `python -m stages.<name>`: the interpreter running this flow must come first.
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                DVC_NO_ANALYTICS="1")


_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor moves and colours of nested progress bars
_PROGRESS_BAR = re.compile(r"\d+%\|.*\|")  # tqdm's "67%|██████▋   | 4/6 [...]"


def log_line(line: str) -> str | None:
    """A line of a stage's output as a run log shows it: progress bars (redrawn with carriage returns,
    or their last state) left out, terminal codes taken off; None for nothing to log."""
    if "\r" in line:
        return None
    line = _TERMINAL_CODES.sub("", line).strip()
    return line if line and not _PROGRESS_BAR.search(line) else None


def run_dvc(repo: str | Path, *args: str, log=None) -> str:
    """Run a dvc command in `repo`, streaming its output to `log`; classify failures."""
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=repo, env=_environment(Path(repo)),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    lines = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        shown = log_line(line)
        if log is not None and shown is not None:
            log.info(shown)
    code = proc.wait()
    output = "\n".join(lines)
    if code != 0:
        errors = [ln for ln in lines if ln.startswith(("error:", "ERROR:"))]
        if f"exited with {VALIDATION_EXIT}" in output or any(ln.startswith("error:") for ln in lines):
            raise InvalidInput("\n".join(errors[-3:]) or output[-2000:])
        last_words = [shown for ln in lines if ln not in errors and (shown := log_line(ln)) is not None][-5:]
        raise StageFailed(f"dvc {' '.join(args)} failed (exit {code}):\n" + "\n".join(last_words + errors[-3:]))
    return output


def stage_graph(repo: str | Path) -> dict[str, list[str]]:
    """{stage: the stages it depends on directly}, stages of dvc.yaml in dependency order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph  # edges point from a stage to the stages it depends on
        return {stage.name: sorted(s.name for s in graph.successors(stage))
                for stage in reversed(list(nx.topological_sort(graph)))}


def stage_order(repo: str | Path, targets: list[str] | None = None) -> list[str]:
    """Stage names of dvc.yaml in dependency order; with targets, those and everything upstream."""
    graph = stage_graph(repo)
    if not targets:
        return list(graph)
    unknown = set(targets) - set(graph)
    if unknown:
        raise InvalidInput(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(graph)}")
    keep, todo = set(), list(targets)
    while todo:
        stage = todo.pop()
        if stage not in keep:
            keep.add(stage)
            todo.extend(graph[stage])
    return [name for name in graph if name in keep]


def current_params(repo: str | Path) -> dict[str, Any]:
    return read_yaml(Path(repo) / PARAMS_FILE) or {}


def merged_params(repo: str | Path, overrides: dict[str, Any]) -> tuple[Params, str]:
    """The repo's params.yaml edited at the overrides' keys, validated (InvalidInput naming the key if bad)."""
    try:
        return edit_params((Path(repo) / PARAMS_FILE).read_text(encoding="utf-8"), overrides)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None


def apply_params(repo: str | Path, overrides: dict[str, Any]) -> None:
    """Set the overrides in params.yaml (validated first; the file is untouched when they are bad)."""
    _, text = merged_params(repo, overrides)
    with atomic_path(Path(repo) / PARAMS_FILE) as tmp:
        tmp.write_text(text, encoding="utf-8")


def retry_transient(task, task_run, state) -> bool:
    try:
        state.result()
    except InvalidInput:
        return False
    except Exception:
        return True
    return False


@task(task_run_name="{stage}", retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=10),
      retry_condition_fn=retry_transient)
def repro_stage(stage: str, repo: str, force: bool = False) -> str:
    """One DVC stage; returns "ran" or "up to date"."""
    log = get_run_logger()
    output = run_dvc(repo, "repro", "--single-item", *(["--force"] if force else []), stage, log=log)
    return "ran" if f"Running stage '{stage}'" in output else "up to date"


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=5), retry_condition_fn=retry_transient)
def sync_remote(repo: str, direction: str, remote: str | None) -> None:
    """Pull the outputs a remote already has (missing ones are fine) or push what this run made."""
    args = [direction, *(["--remote", remote] if remote else [])]
    if direction == "pull":
        args.append("--allow-missing")
    run_dvc(repo, *args, log=get_run_logger())


# Params that name files: DVC runs experiments in temporary copies of the repository under .dvc/tmp, where
# a relative path that leaves the repository (../data/...) no longer points at the same place. Paths inside
# it (the defaults, data/embedded/...) are copied along and stay as they are.
PATH_PARAMS = ("data.source", "data.unlabelled", "teacher.pretrained", "augment.tang.nltk_data",
               "augment.tinybert.vectors_file", "general_distill.corpus")
