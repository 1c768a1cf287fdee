"""Data-parallel stages (params `processes`): 2 gloo processes follow the recipe 1 process follows.

One workspace with the upstream artifacts (tiny settings); the teacher, tinybert4's step 2 and the BiLSTM
train once in this process and once as `python -m stages.<name>` with `processes: 2` at the same global
batch: the same steps, loss curves within TOLERANCE, the same files. The teacher_logits pass sharded over
2 processes (started by torchrun) gives the same rows in the same order. A 2-process run killed outright
resumes, and a run resumes from a checkpoint written under the other setting (1 -> 2 -> 1 processes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import NLTK_DATA, SST2, TINY, tool_env, write_params
from test_resume import Crash, run_stage, trainer_spy

from pipeline.params.config import deep_merge, load_params

pytestmark = pytest.mark.slow

# Logged losses (each the mean of 10 steps) of 1 and 2 processes: the same rows in each global batch, but
# dropout masks drawn per process, in-batch terms over each process's share, and sums in another order.
TOLERANCE = 0.05
STEP = {"epochs": 1.0, "batch_size": 16}
SETTINGS = deep_merge(TINY, {
    "checkpoint_steps": 4, "precision": "fp32",  # bf16 rounding would hide nothing here and blur the comparison
    "data": {"max_train": 160},
    "augment": {"methods": ["tang"]},
    "teacher": {"max_rows": None, "epochs": 2.0, "batch_size": 16},
    "tang": {"bilstm_kd": {"epochs": 2.0, "batch_size": 32}, "bilstm_nokd": "__drop__"},
    "general_distill": {"objectives": []},
    "tinybert": {"tinybert4": {"init": "teacher_slice", "intermediate": STEP, "prediction": STEP}},
    "minilmv2": {"minilm4": "__drop__"}, "lrc": {"lrc4": "__drop__"}, "distilbert": {"distil3": "__drop__"},
})

# job -> (stage module, arguments, the artifact it writes, its history)
JOBS = {
    "teacher": ("teacher_finetune", [], "models/teacher", "reports/history/teacher.json"),
    "tinybert4_prediction": ("distill", ["tinybert", "tinybert4", "prediction"], "models/students/tinybert4",
                             "reports/history/tinybert4.json"),
    "bilstm_kd": ("distill", ["tang", "bilstm_kd"], "models/students/bilstm_kd", "reports/history/bilstm_kd.json"),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_teacher):
    repo = tmp_path_factory.mktemp("distributed")
    write_params(repo, deep_merge(SETTINGS, {"teacher": {"pretrained": str(tiny_teacher)}, "data": {"source": str(SST2)},
                                             "augment": {"tang": {"nltk_data": str(NLTK_DATA)}}}))
    text = (repo / "params.yaml").read_text()
    (repo / "params2.yaml").write_text(text.replace("\nprocesses: 1 ", "\nprocesses: 2 "))
    assert load_params(repo / "params2.yaml").processes == 2
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        for module, args in (("prepare", []), ("augment", ["tang"]), ("teacher_finetune", []), ("teacher_logits", []),
                             ("distill", ["tinybert", "tinybert4", "intermediate"])):
            run_stage(module, args)
        yield repo
    finally:
        os.chdir(cwd)


def two_processes(repo: Path, module: str, args: list[str], launcher: tuple[str, ...] = (),
                  **popen) -> subprocess.Popen:
    """`python -m stages.<module> args` with processes: 2, as DVC would run it (or under `launcher`)."""
    env = {**tool_env(), "DISTILL_PARAMS": str(repo / "params2.yaml")}
    env.pop("OMP_NUM_THREADS", None)  # the launcher shares the cores out
    return subprocess.Popen([sys.executable, *launcher, "-m", f"stages.{module}", *args], cwd=repo, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return out


def losses(history: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads(history.read_text()) if "loss" in h}


def last_eval(history: Path) -> dict[str, float]:
    return [h for h in json.loads(history.read_text()) if "eval_loss" in h][-1]


@pytest.mark.parametrize("job", list(JOBS))
def test_two_processes_follow_the_one_process_recipe(workspace, monkeypatch, job):
    module, args, out, history = JOBS[job]
    trainer_spy(monkeypatch, None)
    run_stage(module, args)
    one, one_files = losses(workspace / history), sorted(p.name for p in (workspace / out).iterdir())
    one_eval = last_eval(workspace / history)
    report = workspace / "reports" / ("teacher.json" if job == "teacher" else f"students/{args[1]}.json")
    steps = json.loads(report.read_text())["steps"]
    shutil.rmtree(workspace / out)

    log = finish(two_processes(workspace, module, args))
    assert "2 processes (1 CPU thread(s) each)" in log
    two = losses(workspace / history)
    assert sorted(two) == sorted(one) and len(one) >= 2, (one, two)
    worst = max(abs(two[s] - one[s]) for s in one)
    assert worst < TOLERANCE, f"{job}: logged losses differ by up to {worst:.4f}:\n{one}\n{two}"
    assert sorted(p.name for p in (workspace / out).iterdir()) == one_files
    assert abs(last_eval(workspace / history)["eval_loss"] - one_eval["eval_loss"]) < TOLERANCE
    summary = json.loads(report.read_text())
    assert summary["processes"] == 2 and summary["steps"] == steps
    # rank 0 alone wrote: no scratch or second copy anywhere in the workspace
    assert not [p for p in workspace.rglob("*") if ".tmp" in p.name or p.name.startswith("rank")]


def test_the_teacher_logits_pass_shards_over_processes_to_the_same_rows(workspace):
    import datasets

    from pipeline.artifacts import TEACHER_LOGITS

    one = datasets.load_from_disk(str(workspace / TEACHER_LOGITS))
    rows, one_logits = one.remove_columns("logits").to_list(), np.array(one["logits"])
    shutil.rmtree(workspace / TEACHER_LOGITS)
    # started by torchrun itself this time: the stage joins its process group and launches nothing
    finish(two_processes(workspace, "teacher_logits", [], launcher=["-m", "torch.distributed.run", "--standalone",
                                                                    "--nproc-per-node", "2"]))
    two = datasets.load_from_disk(str(workspace / TEACHER_LOGITS))
    assert two.remove_columns("logits").to_list() == rows  # the same rows, in the same order
    np.testing.assert_allclose(np.array(two["logits"]), one_logits, atol=1e-4)
    assert json.loads((workspace / "reports/teacher_logits.json").read_text())["processes"] == 2
    assert not list((workspace / "checkpoints/teacher_logits").glob("*.npy"))


def test_a_killed_two_process_run_resumes_and_checkpoints_serve_either_setting(workspace, monkeypatch):
    module, args, out, history = JOBS["teacher"]
    checkpoints = workspace / "checkpoints/teacher_finetune"
    trainer_spy(monkeypatch, None)
    run_stage(module, args)
    total = max(losses(workspace / history))
    shutil.rmtree(workspace / out)

    trainer_spy(monkeypatch, 4)  # one process, stopped right after its checkpoint at step 4
    with pytest.raises(Crash):
        run_stage(module, args)
    proc = two_processes(workspace, module, args, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint-8" / "trainer_state.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-4000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both processes, mid-run
    log = proc.communicate()[0]
    assert "resuming from checkpoints/teacher_finetune/checkpoint-4" in log  # 2 processes from 1's checkpoint
    assert not (workspace / out).exists()

    resumed = trainer_spy(monkeypatch, None)  # one process resumes what the two left
    run_stage(module, args)
    assert resumed == ["checkpoints/teacher_finetune/checkpoint-8"]
    assert max(losses(workspace / history)) == total
    assert (workspace / out / "model.safetensors").is_file()
    assert not list(checkpoints.glob("checkpoint-*"))



def test_passes_of_device_batch_rows_follow_the_one_pass_recipe(workspace, monkeypatch):
    """device_batch 4 trains the teacher's batches of 16 in 4 accumulated passes: the same steps and curve."""
    module, args, out, history = JOBS["teacher"]
    trainer_spy(monkeypatch, None)
    run_stage(module, args)
    one = losses(workspace / history)
    (workspace / "params4.yaml").write_text((workspace / "params.yaml").read_text()
                                            .replace("\ndevice_batch: null ", "\ndevice_batch: 4 "))
    monkeypatch.setenv("DISTILL_PARAMS", str(workspace / "params4.yaml"))
    run_stage(module, args)
    assert json.loads((workspace / "reports/teacher.json").read_text())["passes_per_step"] == 4
    four = losses(workspace / history)
    assert sorted(four) == sorted(one)
    assert max(abs(four[s] - one[s]) for s in one) < TOLERANCE, (one, four)


def test_a_process_that_fails_on_a_user_error_fails_the_stage_with_its_message(workspace):
    proc = two_processes(workspace, "distill", ["tinybert", "nosuch"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert "error: tinybert.nosuch: no such student in params (have: tinybert4)" in out
    assert "Traceback" not in out
