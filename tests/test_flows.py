"""Prefect flows against a real Prefect server on 127.0.0.1 (started and stopped here, analytics off).

`deployed` is a repository with the flows deployed from it; `built` a copy on which one deployment run
made every artifact. A test that changes a repository works on its own copy of one of them (the flows
take the repository as a parameter), so each test runs alone or in any order."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BILSTM_STAGES, BILSTMS_ONLY, client_call, dvc, git, make_repo, prefect, tool_env

from pipeline.orchestration.prefect_local import POOL, deploy

pytestmark = pytest.mark.e2e


def run_deployment_once(env: dict, repo: Path, parameters: dict) -> dict:
    """Schedule a run of the repo's distill-pipeline deployment, let one worker pick it up, return the
    run's final state name, its state message and the report artifact."""
    run_id = client_call(env, f"""
from prefect.deployments import run_deployment
run = run_deployment("distill-pipeline/distill-pipeline", parameters={parameters!r}, timeout=0)
print(run.id)
""")
    prefect(env, "worker", "start", "--pool", POOL, "--type", "process", "--run-once")
    out = client_call(env, f"""
import json
from uuid import UUID
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, TaskRunFilter, FlowRunFilter, FlowRunFilterId
with get_client(sync_client=True) as c:
    run = c.read_flow_run(UUID("{run_id}"))
    arts = c.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    tasks = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    print(json.dumps({{"state": run.state.name, "message": run.state.message or "",
                      "report": "\\n".join(a.data for a in arts if a.type == "markdown"),
                      "task_runs": {{t.name: t.run_count for t in tasks}}}}))
""")
    import json

    return json.loads(out)


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory, tiny_teacher) -> Path:
    # The default inputs live in the repository: DVC experiments (temporary copies under .dvc/tmp) find them.
    repo = make_repo(tmp_path_factory.mktemp("flows"), tiny_teacher, BILSTMS_ONLY)
    assert "'distill-pipeline/distill-pipeline' successfully created" in deploy(server, repo)
    return repo


def copy_repo(repo: Path, where: Path) -> Path:
    shutil.copytree(repo, where / "repo", symlinks=True)
    return where / "repo"


@pytest.fixture(scope="module")
def built(server, deployed, tmp_path_factory) -> tuple[Path, dict]:
    repo = copy_repo(deployed, tmp_path_factory.mktemp("built"))
    return repo, run_deployment_once(server, repo, {"repo": str(repo)})


@pytest.fixture
def repo(built, tmp_path) -> Path:
    """A copy of the built repository, for a test that changes it."""
    return copy_repo(built[0], tmp_path)


@pytest.fixture
def fresh(deployed, tmp_path) -> Path:
    """A copy of the deployed repository before any run."""
    return copy_repo(deployed, tmp_path)


def stages_run(report: str) -> set[str]:
    line = next(ln for ln in report.splitlines() if ln.startswith("Stages run:"))
    return set() if "nothing" in line else set(line.removeprefix("Stages run:").strip().split(", "))


def test_deployment_run_on_a_worker_completes_the_pipeline(built):
    repo, result = built
    assert result["state"] == "Completed", result
    assert stages_run(result["report"]) == BILSTM_STAGES
    assert "| teacher |" in result["report"] and "| bilstm_kd |" in result["report"]
    assert "up to date" in dvc(repo, "status").stdout  # DVC agrees: nothing left for `dvc repro`


def test_the_prefect_server_listens_on_the_loopback_address_only(server):
    import socket
    from urllib.parse import urlparse

    import psutil

    url = urlparse(server["PREFECT_API_URL"])
    assert url.hostname == "127.0.0.1"
    with socket.create_connection((url.hostname, url.port), timeout=5):
        pass
    others = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")}
    if not others:
        pytest.skip("this machine has no address but the loopback one")
    for address in others:  # the machine's other addresses: nothing listens there
        with pytest.raises(OSError):
            socket.create_connection((address, url.port), timeout=5).close()


def test_second_run_does_nothing_new(server, repo):
    lock = (repo / "dvc.lock").read_text()
    result = run_deployment_once(server, repo, {"repo": str(repo)})
    assert result["state"] == "Completed" and stages_run(result["report"]) == set()
    assert (repo / "dvc.lock").read_text() == lock


def test_param_change_through_the_flow_reruns_only_dependents(server, repo):
    result = run_deployment_once(server, repo, {"repo": str(repo), "params": {"tang": {"bilstm_kd": {"hidden": 12}}}})
    assert result["state"] == "Completed", result
    # set as an edit of params.yaml would: the ablation written as bilstm_kd + its changes follows its base
    assert stages_run(result["report"]) == {"tang@bilstm_kd", "tang@bilstm_nokd", "export", "evaluate", "select"}
    tang = yaml.safe_load((repo / "params.yaml").read_text())["tang"]
    assert tang["bilstm_kd"]["hidden"] == tang["bilstm_nokd"]["hidden"] == 12
    assert "<<: *bilstm_kd" in (repo / "params.yaml").read_text()


def test_second_clone_pulls_from_a_shared_remote_instead_of_recomputing(server, repo, tmp_path):
    from pipeline.orchestration.flows import distill_pipeline

    dvc(repo, "remote", "add", "-d", "shared", str(tmp_path / "dvc-remote"))
    ran = distill_pipeline(repo=str(repo), use_remote=True)  # computed earlier: pushes what it has
    assert set(ran.values()) == {"up to date"}
    assert list((tmp_path / "dvc-remote").rglob("*"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results and shared remote")  # dvc.lock and metrics travel through git

    second = tmp_path / "second" / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(second)], check=True)
    ran = distill_pipeline(repo=str(second), use_remote=True)
    assert set(ran.values()) == {"up to date"}, ran  # pulled, nothing recomputed
    assert (second / "models" / "students" / "bilstm_kd" / "model.safetensors").is_file()
    assert "up to date" in dvc(second, "status").stdout


def test_sweep_fans_out_experiments_to_workers_and_tabulates_them(server, repo):
    from pipeline.orchestration.flows import distill_sweep
    from pipeline.orchestration.prefect_local import start_worker, stop

    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline for experiments", "--allow-empty")
    before = (dvc(repo, "status").stdout, (repo / "params.yaml").read_text())
    worker = start_worker(server)  # on the pool of the experiments
    try:
        rows = distill_sweep(repo=str(repo), experiment_deployment="distill-experiment/distill-experiment",
                             param_sets=[{"tang": {"bilstm_kd": {"hidden": 10}}},
                                         {"tang": {"bilstm_kd": {"hidden": 20}}}])
    finally:
        stop(worker)
    assert [(r["experiment"], r["tang.bilstm_kd.hidden"]) for r in rows] == [("sweep-0", 10), ("sweep-1", 20)]
    assert all(0 <= r["bilstm_kd dev_accuracy"] <= 1 and "teacher dev_accuracy" in r for r in rows)
    names = client_call(server, """
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
with get_client(sync_client=True) as c:
    runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["distill-experiment"])))
    print(sorted(r.state.name for r in runs))
""")
    assert names.count("'Completed'") >= 2  # one flow run per params set, run by the worker
    # each experiment ran in its own temporary workspace: this one is as it was
    assert (dvc(repo, "status").stdout, (repo / "params.yaml").read_text()) == before


def test_stages_import_without_prefect():
    code = ("import sys; sys.modules['prefect'] = None\n"
            "import stages.prepare, stages.augment, stages.teacher_finetune, stages.teacher_logits, "
            "stages.general_distill, stages.distill, stages.export, stages.evaluate")
    subprocess.run([sys.executable, "-c", code], check=True, env=tool_env())


def test_run_logs_leave_out_progress_bars_and_terminal_codes():
    from pipeline.orchestration.workspace import log_line

    assert log_line("Running stage 'prepare':") == "Running stage 'prepare':"
    assert log_line("\x1b[A{'eval_loss': 0.41, 'epoch': 1.0}\x1b[0m") == "{'eval_loss': 0.41, 'epoch': 1.0}"
    assert log_line(" 67%|██████▋   | 4/6 [00:01<00:00,  3.10it/s]") is None
    assert log_line("\x1b[A\x1b[A100%|██████████| 6/6 [00:02<00:00]") is None
    assert log_line("train:  10%|█         | 1/10\rtrain:  20%|██        | 2/10") is None
    assert log_line("   ") is None


def test_bad_params_override_fails_before_any_stage(server, fresh):
    result = run_deployment_once(server, fresh, {"repo": str(fresh), "params": {"augment": {"tang": {"p_mask": 1.5}}}})
    assert result["state"] == "Failed" and "augment.tang.p_mask" in result["message"]
    assert result["task_runs"] == {}
    assert "p_mask: 0.1" in (fresh / "params.yaml").read_text()  # untouched


def test_stage_with_bad_params_fails_the_run_and_is_not_retried(server, fresh):
    params = fresh / "params.yaml"
    params.write_text(params.read_text().replace("n_iter: 3", "n_iter: -1"))
    result = run_deployment_once(server, fresh, {"repo": str(fresh)})
    assert result["state"] == "Failed"
    assert "augment.tang.n_iter: Input should be greater than or equal to 0" in result["message"]
    assert result["task_runs"] == {"prepare": 1}  # the first stage stops the run, once: not retried


FLAKY = """import os, signal, sys
from pathlib import Path

_attempts = Path("attempts.txt")
_n = len(_attempts.read_text().splitlines()) if _attempts.exists() else 0
_attempts.write_text("attempt\\n" * (_n + 1))
if {fail}:
    {how}
"""


def make_flaky(repo: Path, fail: str, how: str) -> Path:
    """The augment stage, failing as `how` says while `fail` holds (`_n` counts earlier attempts)."""
    stage = repo / "stages" / "augment.py"
    stage.write_text(FLAKY.format(fail=fail, how=how) + stage.read_text())
    return repo / "attempts.txt"


@pytest.mark.parametrize("how", ["sys.exit(1)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_a_stage_that_fails_once_is_retried_and_the_run_completes(server, fresh, how):
    from pipeline.orchestration.flows import distill_pipeline

    attempts = make_flaky(fresh, "_n == 0", how)
    ran = distill_pipeline(repo=str(fresh), targets=["augment@tang"], retry_delay_seconds=0)
    assert ran == {"prepare": "ran", "augment@tang": "ran"}
    assert len(attempts.read_text().splitlines()) == 2
    assert (fresh / "data/augmented/tang").is_dir()


def test_a_stage_that_always_fails_is_tried_the_configured_times_and_fails_with_its_message(server, fresh):
    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.workspace import StageFailed

    attempts = make_flaky(fresh, "True", "print('the disk went away', file=sys.stderr); sys.exit(1)")
    with pytest.raises(StageFailed, match="augment") as err:
        distill_pipeline(repo=str(fresh), targets=["augment@tang"], retries=2, retry_delay_seconds=0)
    assert len(attempts.read_text().splitlines()) == 3  # the first try and two retries
    assert "the disk went away" in str(err.value)


def test_an_error_line_marks_bad_input_whatever_the_exit_code(server, fresh):
    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.workspace import InvalidInput

    attempts = make_flaky(fresh, "True", "print('error: data/train.tsv:3: a bad row', file=sys.stderr); sys.exit(3)")
    with pytest.raises(InvalidInput, match="data/train.tsv:3: a bad row"):
        distill_pipeline(repo=str(fresh), targets=["augment@tang"], retry_delay_seconds=0)
    assert len(attempts.read_text().splitlines()) == 1  # not retried


def test_experiments_keep_paths_inside_the_repository_and_pin_paths_outside_it(tmp_path):
    from pipeline.orchestration.flows import experiment_args

    repo = tmp_path / "repo"
    (repo / "data/embedded/nltk_data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (repo / "params.yaml").write_text("data:\n  source: ../elsewhere\naugment:\n  tang:\n    nltk_data: data/embedded/nltk_data\n")
    args = experiment_args(repo, "e1", {"tang": {"bilstm_kd": {"hidden": 8}}})
    assert args == ["exp", "run", "--temp", "--name", "e1", "-S", f"data.source={tmp_path / 'elsewhere'}",
                    "-S", "tang.bilstm_kd.hidden=8"]
