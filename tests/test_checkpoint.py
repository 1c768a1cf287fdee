"""Checkpoints: resumable state, a stage killed with SIGKILL resumes where it stopped, and the teacher
logits pass resumes at its first missing chunk (every training stage's resume: test_resume.py)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, SST2

from pipeline.params.config import Params, deep_merge, parse_params
from pipeline.params.profile import render_params
from pipeline.training.checkpoint import CheckpointDir, fingerprint


def test_fingerprint_tracks_config_and_inputs(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "meta.json").write_text('{"rows": 1}')
    a = fingerprint({"lr": 1}, [tmp_path / "in"])
    assert a == fingerprint({"lr": 1}, [tmp_path / "in"]) != fingerprint({"lr": 2}, [tmp_path / "in"])
    (tmp_path / "in" / "meta.json").write_text('{"rows": 2}')
    assert fingerprint({"lr": 1}, [tmp_path / "in"]) != a


def test_checkpoint_dir_resumes_only_the_same_unfinished_run(tmp_path):
    folder = tmp_path / "ckpt"
    run = CheckpointDir(folder, "abc")
    assert run.start() is False
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-30").mkdir()
    (folder / "checkpoint-30" / "trainer_state.json").write_text("{}")
    (folder / "checkpoint-40").mkdir()  # half-written: no trainer_state.json
    assert CheckpointDir(folder, "abc").start() is True
    assert run.latest_trainer_checkpoint().endswith("checkpoint-30")
    assert CheckpointDir(folder, "other").start() is False  # other params: cleared
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]
    run = CheckpointDir(folder, "other")
    (folder / "part-00000.npy").write_bytes(b"x")
    run.complete()
    assert sorted(p.name for p in folder.iterdir()) == ["run.json"]
    assert json.loads((folder / "run.json").read_text()) == {"fingerprint": "other", "complete": True}
    assert CheckpointDir(folder, "other").start() is False  # a finished run is not resumed


def run_stage(workspace: Path, name: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", f"stages.{name}"], cwd=workspace, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_killed_training_stage_resumes_from_its_checkpoint(tmp_path, tiny_teacher):
    params = parse_params(deep_merge(Params().model_dump(), {
        "checkpoint_steps": 10,
        "data": {"source": str(SST2), "max_train": 1500, "max_dev": 50},
        "teacher": {"pretrained": str(tiny_teacher), "epochs": 2.0, "batch_size": 8},
    }))
    (tmp_path / "params.yaml").write_text(render_params(params))
    assert run_stage(tmp_path, "prepare").wait(timeout=120) == 0

    ckpt = tmp_path / "checkpoints" / "teacher_finetune"
    first = run_stage(tmp_path, "teacher_finetune")
    deadline = time.time() + 180
    while not list(ckpt.glob("checkpoint-*/trainer_state.json")):
        assert first.poll() is None, "stage finished before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    saved = max(int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").exists())
    assert not (tmp_path / "models" / "teacher").exists()  # no final artifact from the killed run

    second = run_stage(tmp_path, "teacher_finetune")
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output[-3000:]
    resumed = re.search(r"resuming from \S*checkpoint-(\d+)", output)
    assert resumed and int(resumed.group(1)) >= saved
    history = json.loads((tmp_path / "reports" / "history" / "teacher.json").read_text())
    steps = [h["step"] for h in history if "loss" in h]
    total = 2 * -(-1500 // 8)
    assert history[-1]["step"] == total and max(steps) <= total  # the step counter continued to the end
    assert (tmp_path / "models" / "teacher" / "model.safetensors").is_file()
    assert sorted(p.name for p in ckpt.iterdir()) == ["run.json"]


def test_teacher_logits_pass_resumes_at_the_first_missing_chunk(tmp_path, tiny_teacher, monkeypatch):
    import numpy as np

    from pipeline.models.hf import load_classifier, load_tokenizer
    from pipeline.tasks import preset_task
    from pipeline.training import inference

    monkeypatch.setattr(inference, "CHUNK_ROWS", 4)
    model = load_classifier(str(tiny_teacher), preset_task("sst2"))
    tokenizer = load_tokenizer(str(tiny_teacher))
    texts = [f"sentence number {i}" for i in range(10)]
    run = CheckpointDir(tmp_path / "ckpt", "fp")
    run.start()
    np.save(run.folder / "part-00000.npy", np.full((4, 2), 7.0, dtype=np.float32))  # done before the "crash"
    out = inference.resumable_logits(model, tokenizer, texts, None, 4, 32, CheckpointDir(tmp_path / "ckpt", "fp"))
    assert (out[:4] == 7.0).all()  # reused, not recomputed
    fresh = inference.classifier_logits(model, tokenizer, texts[4:], batch_size=4, progress=False)
    np.testing.assert_allclose(out[4:], fresh, atol=1e-6)
    assert sorted(p.name for p in run.folder.glob("part-*.npy")) == ["part-00000.npy", "part-00001.npy",
                                                                     "part-00002.npy"]


def test_a_steps_fingerprint_is_the_params_its_stage_declares():
    """A checkpoint resumes only under the same values of the params keys its stage lists in dvc.yaml: a change
    there starts afresh (as DVC reruns the stage), a change anywhere else (another student, how many processes)
    resumes."""
    from pipeline.methods import methods
    from pipeline.orchestration.dag import all_stages
    from pipeline.params.config import Params, deep_merge, parse_params

    method = methods()["tinybert"]
    step = method.steps[0]

    def declared(overlay: dict) -> dict:
        params = parse_params(deep_merge(Params().model_dump(), overlay))
        return method.run_of(step, params, "tinybert4", method.paths(step, "tinybert4")).declared

    base = declared({})
    stage = next(s for s in all_stages() if s.name == "tinybert_intermediate")
    assert list(base) == [key.replace("${key}", "tinybert4") for key in stage.params]
    for changed in ({"tinybert": {"tinybert4": {"intermediate": {"learning_rate": 1e-3}}}}, {"seed": 1},
                    {"general_distill": {"student": {"heads": 6}}}):
        assert declared(changed) != base
    for unchanged in ({"tinybert": {"tinybert4": {"prediction": {"learning_rate": 1e-3}}}}, {"processes": 2},
                      {"minilmv2": {"minilm4": {"intermediate": {"epochs": 2.0}}}}, {"evaluate": {"repeats": 5}}):
        assert declared(unchanged) == base
