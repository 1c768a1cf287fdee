"""One pipeline run fanned out over a work pool (pipeline/orchestration/fanout.py): a real Prefect server, a process pool
with three workers, each making its clones in its own folder, and one local-folder DVC remote."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import BILSTM_STAGES, BILSTMS_ONLY, PREFECT_GROUP, dvc, git
from conftest import lock_outputs as outputs
from conftest import make_repo, needs_shared

HEARTBEAT_S = 30  # Prefect's smallest heartbeat period


@pytest.mark.slow
@pytest.mark.xdist_group(PREFECT_GROUP)
def test_a_fanned_out_run_survives_a_dead_worker_and_leaves_what_a_serial_run_leaves(server, tiny_teacher,
                                                                                        tmp_path):
    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.prefect_local import deploy, kill_tree, start_worker, stop

    repo = make_repo(tmp_path / "a", tiny_teacher, BILSTMS_ONLY)
    serial = make_repo(tmp_path / "b", tiny_teacher, BILSTMS_ONLY)
    dvc(serial, "repro")
    deploy(server, repo)
    workdirs = [tmp_path / f"worker{i}" for i in range(3)]
    workers = [start_worker(server, workdir=w, limit=1, heartbeat_s=HEARTBEAT_S, log=w.with_suffix(".log"))
               for w in workdirs]
    killed: list[int] = []

    def kill_the_one_running(stage: str) -> None:  # as soon as a worker has begun the stage
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            for i, workdir in enumerate(workdirs):
                if any(workdir.glob(f"{stage}-*")):
                    kill_tree(workers[i])
                    killed.append(i)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_one_running, args=("teacher_finetune",), daemon=True)
    killer.start()
    try:
        ran = distill_pipeline(repo=str(repo), stage_deployment="distill-stage/distill-stage",
                               remote=str(tmp_path / "remote"), lost_after_s=2.5 * HEARTBEAT_S)
    finally:
        for worker in workers:
            stop(worker)
    killer.join(timeout=1)

    assert killed, "no worker began teacher_finetune"
    assert ran == {stage: "ran" for stage in ran} and set(ran) == BILSTM_STAGES
    assert outputs(repo) == outputs(serial)
    assert "up to date" in dvc(repo, "status").stdout  # the outputs are in the workspace, as dvc.lock says
    for name in ("reports/metrics.json", "reports/report.md", "models/students/bilstm_kd/model.safetensors"):
        assert (repo / name).is_file(), name
    # the stages were spread over the workers; the killed one's stage was done again by another one (its
    # own clone stays behind)
    clones = stage_clones()
    assert set(clones) == BILSTM_STAGES
    worker_of = {stage: next(i for i, w in enumerate(workdirs) if Path(c).is_relative_to(w))
                 for stage, c in clones.items()}
    assert len(set(worker_of.values())) >= 2 and worker_of["teacher_finetune"] != killed[0], worker_of
    assert list(workdirs[killed[0]].glob("teacher_finetune-*"))


@pytest.mark.slow
@pytest.mark.xdist_group(PREFECT_GROUP)
def test_a_stage_failing_on_bad_input_fails_once_and_stops_only_what_needs_it(server, tiny_teacher, tmp_path):
    import shutil

    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.prefect_local import deploy, start_worker, stop
    from pipeline.orchestration.workspace import StageFailed

    broken = tmp_path / "no_weights"  # a teacher folder params validation accepts, whose weights are missing
    shutil.copytree(tiny_teacher, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    repo = make_repo(tmp_path / "a", broken, BILSTMS_ONLY)
    deploy(server, repo)
    workers = [start_worker(server, workdir=tmp_path / f"worker{i}", limit=1) for i in range(2)]
    try:
        with pytest.raises(StageFailed, match=r"teacher_finetune: failed.*no_weights"):
            distill_pipeline(repo=str(repo), stage_deployment="distill-stage/distill-stage",
                             remote=str(tmp_path / "remote"))
    finally:
        for worker in workers:
            stop(worker)
    runs = stage_runs(repo)
    assert [state for stage, state in runs if stage == "teacher_finetune"] == ["Failed"]  # bad input: no retry
    started = {stage for stage, _ in runs}
    assert {"prepare", "augment@tang"} <= started and not started & {"teacher_logits", "export", "evaluate"}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert {"prepare", "augment@tang"} <= set(lock) and "teacher_finetune" not in lock  # what ran is recorded
    assert (repo / "data/prepared").is_dir() and not (repo / "models/teacher").exists()


def stage_runs(source: Path) -> list[tuple[str, str]]:
    """(stage, final state name) of every distill-stage flow run of the repository `source`."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["distill-stage"])))
        return [(run.parameters["stage"], run.state.name) for run in runs if run.parameters["source"] == str(source)]


def stage_clones() -> dict[str, str]:
    """{stage: the clone its completed distill-stage flow run worked in}."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["distill-stage"])))
        return {run.parameters["stage"]: run.state.result()["clone"] for run in runs if run.state.is_completed()}


def test_a_run_fans_out_only_committed_code(tmp_path, tiny_teacher):
    from pipeline.orchestration.fanout import InvalidInput, check_committed

    repo = make_repo(tmp_path, tiny_teacher, BILSTMS_ONLY)
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + "\n")  # the run's own: fine
    assert check_committed(repo) == git(repo, "rev-parse", "HEAD").strip()
    (repo / "stages" / "augment.py").write_text("# changed\n" + (repo / "stages" / "augment.py").read_text())
    with pytest.raises(InvalidInput, match="commit these changes first.*stages/augment.py"):
        check_committed(repo)


@needs_shared  # it links ../shared/data beside each clone
def test_paths_outside_the_repository_are_linked_beside_each_clone(tmp_path, tiny_teacher):
    from pipeline.orchestration.fanout import make_clone, outside_paths

    repo = make_repo(tmp_path / "a", tiny_teacher, {"data": {"source": "../shared/data/glue/SST-2"}})
    outside = outside_paths(repo)
    assert outside == {"../shared": str((tmp_path / "a" / "shared").resolve())}
    clone = make_clone(str(repo), git(repo, "rev-parse", "HEAD").strip(), tmp_path / "place",
                       (repo / "params.yaml").read_text(), "", {}, str(tmp_path / "remote"), outside)
    assert (clone / "../shared/data/glue/SST-2/train.tsv").is_file()
    assert (clone / "params.yaml").read_text() == (repo / "params.yaml").read_text()
    assert dvc(clone, "remote", "default").stdout.strip() == "run"


GRAPH = {"prepare": [], "augment": ["prepare"], "teacher_finetune": ["prepare"],
         "teacher_logits": ["augment", "teacher_finetune"], "tang@bilstm_kd": ["teacher_logits"],
         "tang@bilstm_nokd": ["augment"], "export": ["tang@bilstm_kd", "tang@bilstm_nokd", "teacher_finetune"],
         "evaluate": ["export"]}


def test_stages_start_when_what_they_need_is_done_and_a_failure_stops_only_its_dependents():
    from pipeline.orchestration.fanout import next_stages

    order, results = list(GRAPH), {}
    assert next_stages(order, GRAPH, [], results, {}) == ["prepare"]
    results["prepare"] = "ran"
    assert next_stages(order, GRAPH, [], results, {}) == ["augment", "teacher_finetune"]  # side by side
    assert next_stages(order, GRAPH, [], results, {"augment": 1, "teacher_finetune": 1}) == []
    results.update(augment="ran", teacher_finetune="failed: out of memory")
    assert next_stages(order, GRAPH, [], results, {}) == ["tang@bilstm_nokd"]
    assert results["teacher_logits"] == "not run: teacher_finetune failed"
    assert results["tang@bilstm_kd"] == "not run: teacher_logits failed"
    assert results["export"].startswith("not run") and results["evaluate"] == "not run: export failed"


def test_stages_the_workspace_has_current_need_no_run_unless_something_upstream_ran():
    from pipeline.orchestration.fanout import next_stages

    order, current = list(GRAPH), list(GRAPH)
    results = {}
    assert next_stages(order, GRAPH, current, results, {}) == [] and set(results.values()) == {"up to date"}
    results = {}
    assert next_stages(order, GRAPH, [s for s in order if s != "augment"], results, {}) == ["augment"]
    results["augment"] = "ran"
    assert next_stages(order, GRAPH, current, results, {}) == ["teacher_logits", "tang@bilstm_nokd"]
    assert results["teacher_finetune"] == "up to date"
