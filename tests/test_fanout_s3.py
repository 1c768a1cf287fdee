"""One pipeline run fanned out over three workers that share nothing but an object store and the Prefect
API, as on three machines: moto's S3 server on 127.0.0.1 holds the DVC remote and Prefect's results, a
git server on 127.0.0.1 (`git daemon`) serves the code, and each worker has its own clone, DISTILL_WORKDIR,
Prefect home and local result folder. The outputs must be those of a serial `dvc repro`, and the
credentials (environment variables only) must reach no file, clone or log. Slow: `.ci/run` runs it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import BILSTMS_ONLY, PREFECT_GROUP, dvc, git
from conftest import lock_outputs as outputs
from conftest import make_repo

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(PREFECT_GROUP)]

BUCKET = "distill"
SECRET = f"never-in-a-file-{uuid.uuid4().hex}"


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.3)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 API on 127.0.0.1 with one bucket; yields the environment variables that reach it."""
    import boto3

    from pipeline.orchestration.prefect_local import free_port, stop

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, "moto's S3 server")
        env = {"AWS_ACCESS_KEY_ID": "distill-worker", "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=SECRET, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop(proc)


@pytest.fixture
def git_server(tmp_path):
    """`git daemon` on 127.0.0.1 serving the bare repositories under its root; yields (root, base URL)."""
    from pipeline.orchestration.prefect_local import free_port, stop

    root = tmp_path / "git-server"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen(["git", "daemon", f"--base-path={root}", "--export-all", "--reuseaddr",
                             "--listen=127.0.0.1", f"--port={port}", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, "git daemon")
        yield root, f"git://127.0.0.1:{port}"
    finally:
        stop(proc)


def repo_with_its_teacher(root: Path, tiny_teacher: Path) -> Path:
    """A tiny BiLSTM pipeline whose teacher is committed in it: nothing a stage reads is outside the clone."""
    repo = make_repo(root, tiny_teacher, {**BILSTMS_ONLY, "teacher": {"pretrained": "teacher_model"}})
    shutil.copytree(tiny_teacher, repo / "teacher_model")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the teacher")
    return repo


def bucket_keys(env: dict[str, str]) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    return [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]


def holding(root: Path, text: str) -> list[str]:
    """Files under root whose bytes hold `text`."""
    needle = text.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_three_workers_sharing_only_a_bucket_and_the_prefect_api_leave_what_a_serial_run_leaves(
        server, s3, git_server, tiny_teacher, tmp_path, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.filesystems import RemoteFileSystem

    from pipeline.orchestration.fanout import outside_paths
    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.prefect_local import deploy, start_worker, stop

    for key, value in s3.items():  # the orchestrating machine's credentials: its environment, nowhere else
        monkeypatch.setenv(key, value)
    repo = repo_with_its_teacher(tmp_path / "a", tiny_teacher)
    assert outside_paths(repo) == {}
    dvc(repo, "remote", "add", "--default", "--local", "store", f"s3://{BUCKET}/dvc")
    (repo / "aws.env").write_text(f"AWS_SECRET_ACCESS_KEY={SECRET}\n")  # an untracked file a user left there
    git_root, git_url = git_server
    subprocess.run(["git", "init", "-q", "--bare", str(git_root / "distill.git")], check=True)
    git(repo, "push", "-q", str(git_root / "distill.git"), "HEAD:refs/heads/main")
    source = f"{git_url}/distill.git"
    # Prefect keeps each stage run's result in the bucket: a block without credentials (every process
    # reads them from its environment), named by each worker's PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK
    RemoteFileSystem(basepath=f"s3://{BUCKET}/prefect-results").save("distill-results", overwrite=True)
    deploy(server, repo)

    machines = [tmp_path / f"machine{i}" for i in range(3)]
    workers = []
    for machine in machines:
        clone = machine / "bert-distill"
        subprocess.run(["git", "clone", "-q", source, str(clone)], check=True, capture_output=True)
        env = {**server, **s3, "PREFECT_HOME": str(machine / "prefect"), "HOME": str(machine),
               "PREFECT_LOCAL_STORAGE_PATH": str(machine / "results"),
               "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "remote-file-system/distill-results"}
        workers.append(start_worker(env, workdir=machine / "work", limit=1, log=machine / "worker.log", cwd=clone))
    start = time.perf_counter()
    try:
        ran = distill_pipeline(repo=str(repo), stage_deployment="distill-stage/distill-stage", git_source=source)
    finally:
        fanned_out = time.perf_counter() - start
        for worker in workers:
            stop(worker)

    serial = repo_with_its_teacher(tmp_path / "b", tiny_teacher)
    start = time.perf_counter()
    dvc(serial, "repro")
    print(f"fanned out over 3 workers: {fanned_out:.0f} s; serial dvc repro: {time.perf_counter() - start:.0f} s")
    assert set(ran) == set(outputs(serial)) and set(ran.values()) == {"ran"}
    assert outputs(repo) == outputs(serial)  # bit for bit: every output's hash
    keys = bucket_keys(s3)
    assert any(k.startswith("dvc/files/md5/") for k in keys) and any(k.startswith("prefect-results/") for k in keys)
    for machine in machines:  # each worker's own results folder stayed empty: the results went to the bucket
        assert not any(p.is_file() for p in (machine / "results").rglob("*"))
    with get_client(sync_client=True) as client:  # where each stage ran: its result, read from the bucket
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["distill-stage"])))
        clones = [Path(run.state.result()["clone"]) for run in runs if run.state.is_completed()]
    worked = {machine for machine in machines for clone in clones if clone.is_relative_to(machine / "work")}
    assert len(clones) == len(ran) and len(worked) >= 2  # each stage on one of the machines; spread over them

    # the credentials are in no file the run wrote: the workspace (but the file the user left), its git
    # history, the clones, the workers' logs, the Prefect homes; nor in the run's logs on the server
    assert holding(repo, SECRET) == [str(repo / "aws.env")]
    assert SECRET not in git(repo, "log", "-p", "--all")
    for machine in machines:
        assert holding(machine, SECRET) == []
        assert not list((machine / "work").rglob("aws.env"))  # a clone holds the commit, no untracked file
    assert holding(Path(server["PREFECT_HOME"]), SECRET) == []
    with get_client(sync_client=True) as client:
        assert all(SECRET not in log.message for log in client.read_logs())
