"""Prefect flows over the DVC pipeline.

DVC stays the source of truth for the DAG, the cache and dvc.lock: every Prefect task runs one stage
through `dvc repro --single-item`, so a Prefect run and a plain `dvc repro` of the same params leave
each other nothing to redo. Prefect adds retries (for transient failures only), logs per stage,
schedules, work pools and a markdown artifact with the results.

- `distill-pipeline`: the stages of dvc.yaml in dependency order (one workspace, one stage at a time,
  as DVC's workspace lock requires), with optional params overrides, force, and a DVC remote to
  pull existing outputs from and push new ones to (how several machines share work). With
  `stage_deployment`, it fans the stages out instead: each a `distill-stage` flow run on the pool, in
  its own clone, independent stages side by side (pipeline/orchestration/fanout.py).
- `distill-sweep`: a list of params overrides run as DVC experiments, each in its own temporary
  workspace (`dvc exp run --temp`), fanned out as separate `distill-experiment` flow runs on the work
  pool when deployed; a table artifact of `dvc exp show` results at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.tasks import exponential_backoff

from pipeline.orchestration.fanout import fan_out
from pipeline.orchestration.workspace import (PATH_PARAMS, StageFailed, apply_params, current_params, merged_params,
                                              repro_stage, retry_transient, run_dvc, stage_order, sync_remote)
from pipeline.params.config import PARAMS_FILE, flatten


def run_markdown(repo: str | Path, results: dict[str, str]) -> str:
    """The run's artifact: the stages it ran, the evaluation table and where the plots are."""
    repo = Path(repo)
    ran = ", ".join(s for s, r in results.items() if r == "ran") or "nothing (all up to date)"
    report = repo / "reports" / "report.md"
    table = report.read_text(encoding="utf-8") if report.is_file() else "(no report: evaluate did not run)"
    plots = sorted((repo / "reports" / "plots").glob("*.png"))
    where = "\n".join(f"- `{p.relative_to(repo)}` (in {repo})" for p in plots) or "(none yet)"
    return f"# Distillation run\n\nStages run: {ran}\n\n{table}\n\n## Plots\n\n{where}\n"


@flow(name="distill-pipeline", log_prints=True)
def distill_pipeline(repo: str = ".", targets: list[str] | None = None, params: dict[str, Any] | None = None,
                     force: bool = False, remote: str | None = None, use_remote: bool = False, retries: int = 2,
                     retry_delay_seconds: float = 10.0, stage_deployment: str | None = None,
                     lost_after_s: float = 600.0, git_source: str | None = None) -> dict[str, str]:
    """Run the DVC pipeline stage by stage; returns {stage: "ran" | "up to date"}. A stage that fails for a
    transient reason is tried again up to `retries` times, after retry_delay_seconds, then twice that, ...

    With `stage_deployment` ("distill-stage/distill-stage"), every stage is its own flow run on the work
    pool, started once the stages it depends on are done, each in a fresh clone of the repository's commit,
    sharing outputs through the DVC remote `remote` (a name or URL; default: the repository's default
    remote) and cloning `git_source` (default: this repository's folder; a URL for workers on other
    machines, with the commit pushed there): see pipeline/orchestration/fanout.py. A run whose worker shows no sign of
    life for `lost_after_s` seconds is started again, up to `retries` times."""
    repo = str(Path(repo).resolve())
    if params:
        apply_params(repo, params)
    order = stage_order(repo, targets)
    if stage_deployment:

        results = fan_out(Path(repo), order, force, remote, stage_deployment, retries, lost_after_s, git_source)
    else:
        if use_remote:
            sync_remote(repo, "pull", remote)
        delays = exponential_backoff(backoff_factor=retry_delay_seconds) if retry_delay_seconds > 0 else 0
        stage_task = repro_stage.with_options(retries=retries, retry_delay_seconds=delays)
        results = {stage: stage_task(stage, repo, force) for stage in order}
        if use_remote:
            sync_remote(repo, "push", remote)
    create_markdown_artifact(key="distill-report", markdown=run_markdown(repo, results),
                             description="teacher vs students")
    return results


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def experiment_args(repo: str | Path, name: str, overrides: dict[str, Any]) -> list[str]:
    repo = Path(repo).resolve()
    current = flatten(current_params(repo))
    flat = {**{k: current[k] for k in PATH_PARAMS if k in current}, **flatten(overrides)}
    for key in PATH_PARAMS:
        path = Path(str(flat.get(key, "")))
        if key in flat and not path.is_absolute() and (repo / path).exists() \
                and not (repo / path).resolve().is_relative_to(repo):
            flat[key] = str((repo / path).resolve())
    flat = {k: v for k, v in flat.items() if k not in PATH_PARAMS or v != current.get(k)}
    return ["exp", "run", "--temp", "--name", name] + [a for k, v in flat.items() for a in ("-S", f"{k}={_yaml(v)}")]


@task(task_run_name="experiment-{name}", retries=1, retry_condition_fn=retry_transient)
def run_experiment(repo: str, name: str, overrides: dict[str, Any]) -> str:
    """One DVC experiment in its own temporary workspace (no clash with the workspace lock)."""
    merged_params(repo, overrides)
    run_dvc(repo, *experiment_args(repo, name, overrides), log=get_run_logger())
    return name


@flow(name="distill-experiment", log_prints=True)
def distill_experiment(repo: str, name: str, overrides: dict[str, Any]) -> str:
    """One params set of a sweep, as a DVC experiment; a sweep starts one flow run of this per set."""
    return run_experiment(str(Path(repo).resolve()), name, overrides)


def experiments(repo: str | Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """{name: its `dvc exp show --json` entry (params and metrics files under "data")} for each named
    experiment found. Experiments of every commit count (a commit made while they ran moves HEAD away from
    their baseline); a name run more than once counts once, its latest run."""
    data = json.loads(run_dvc(repo, "exp", "show", "--json", "--all-commits"))
    latest: dict[str, dict[str, Any]] = {}
    for baseline in data:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                name = rev.get("name")
                if name in names and (name not in latest or str(rev.get("data", {}).get("timestamp") or "")
                                      > str(latest[name].get("data", {}).get("timestamp") or "")):
                    latest[name] = rev
    return latest


def experiment_row(rev: dict[str, Any], keys: list[str] = ()) -> dict[str, Any]:
    """One experiment's entry (`experiments`) as a row: its name, the values of the params `keys` (dotted)
    it ran with, and its main metrics."""
    row: dict[str, Any] = {"experiment": rev["name"]}
    ran_with = flatten(rev.get("data", {}).get("params", {}).get(PARAMS_FILE, {}).get("data", {}))
    row.update({key: ran_with.get(key) for key in keys})
    metrics = rev.get("data", {}).get("metrics", {}).get("reports/metrics.json", {}).get("data", {})
    main = metrics.get("main_metric")
    for model, values in metrics.get("models", {}).items():
        row[f"{model} {main}"] = values.get(main)
        if model != metrics.get("reference"):
            row[f"{model} retention"] = values.get("retention")
    return row


def experiment_rows(repo: str | Path, names: list[str], keys: list[str] = ()) -> list[dict[str, Any]]:
    """The named experiments that ran, one row each (`experiment_row`), in the order of `names`."""
    rows = [experiment_row(rev, keys) for rev in experiments(repo, names).values()]
    return sorted(rows, key=lambda r: names.index(r["experiment"]))


def wait_for_runs(run_ids: list, poll_seconds: float = 2.0) -> list:
    """Block until every flow run is in a final state; return them in order."""
    from prefect import get_client

    done: dict = {}
    with get_client(sync_client=True) as client:
        while len(done) < len(run_ids):
            for run_id in run_ids:
                if run_id not in done:
                    run = client.read_flow_run(run_id)
                    if run.state is not None and run.state.is_final():
                        done[run_id] = run
            if len(done) < len(run_ids):
                time.sleep(poll_seconds)
    return [done[run_id] for run_id in run_ids]


@flow(name="distill-sweep", log_prints=True)
def distill_sweep(repo: str = ".", param_sets: list[dict[str, Any]] | None = None,
                  experiment_deployment: str | None = None, prefix: str = "sweep") -> list[dict[str, Any]]:
    """Run each params set as a DVC experiment and return (and publish) the results table.

    With `experiment_deployment` (e.g. "distill-experiment/distill-experiment"), every set becomes its
    own flow run on the work pool, so idle workers pick them up in parallel; without, they run here
    one after another."""
    repo = str(Path(repo).resolve())
    param_sets = param_sets or []
    for overrides in param_sets:  # a bad set fails the sweep before anything runs
        merged_params(repo, overrides)
    names = [f"{prefix}-{i}" for i in range(len(param_sets))]
    if experiment_deployment:
        from prefect.deployments import run_deployment

        started = [run_deployment(experiment_deployment, timeout=0,
                                  parameters={"repo": repo, "name": name, "overrides": overrides})
                   for name, overrides in zip(names, param_sets)]
        finished = wait_for_runs([run.id for run in started])
        failed = [run.name for run in finished if not run.state.is_completed()]
        if failed:
            raise StageFailed(f"experiment flow runs did not complete: {failed}")
    else:
        for name, overrides in zip(names, param_sets):
            run_experiment(repo, name, overrides)
    keys = sorted({key for overrides in param_sets for key in flatten(overrides)})
    rows = experiment_rows(repo, names, keys)
    if rows:
        create_table_artifact(key="distill-sweep", table=rows, description="one row per experiment")
    return rows
