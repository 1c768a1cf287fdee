"""Every training stage resumes: crashed after checkpoint k, a rerun resumes from k, finishes at the full
step count, leaves only what a finished stage leaves, and ends at the weights of an uninterrupted run.

One workspace with the upstream artifacts (made by the stages themselves on tiny settings), then per
training stage: an uninterrupted run, a run that crashes right after its checkpoint at step K, and the
rerun. The stages run in this process, as `python -m stages.<name>` would run them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import NLTK_DATA, SST2, TINY, WIKITEXT, write_params
from safetensors.torch import load_file

from pipeline.params.config import deep_merge
from pipeline.training import driver as training

K = 3  # checkpoint every K optimizer steps; the crash comes right after the first checkpoint
STEP = {"epochs": 1.0, "batch_size": 16, "max_rows": 112}  # 7 steps: the crash at 3 comes well before the end
TWO_STEPS = {"intermediate": STEP, "prediction": STEP}
BANK = {"cos_nce": {"negatives": "memory_bank", "k": 24}}
RESUME = deep_merge(TINY, {
    "checkpoint_steps": K,
    "general_distill": {"max_sequences": 40, "objectives": ["tinybert", "minilmv2", "distilbert"]},
    "tinybert": {"tinybert4": TWO_STEPS},
    "minilmv2": {"minilm4": TWO_STEPS},
    "lrc": {"lrc4": TWO_STEPS,
            "lrc4_bank": {"init": "tinybert", "intermediate": {**STEP, **BANK}, "prediction": {**STEP, **BANK}}},
})

# job -> (stage module, its arguments, the folder it writes, the jobs whose folders it reads)
JOBS = {
    "teacher": ("teacher_finetune", [], "models/teacher", []),
    "general_tinybert": ("general_distill", ["tinybert"], "models/general/tinybert", []),
    "general_minilmv2": ("general_distill", ["minilmv2"], "models/general/minilmv2", []),
    "general_distilbert": ("general_distill", ["distilbert"], "models/general/distilbert", []),
    "tang": ("distill", ["tang", "bilstm_kd"], "models/students/bilstm_kd", []),
    "distilbert": ("distill", ["distilbert", "distil3"], "models/students/distil3", []),
    "tinybert_intermediate": ("distill", ["tinybert", "tinybert4", "intermediate"], "models/steps/tinybert4/intermediate",
                              []),
    "tinybert_prediction": ("distill", ["tinybert", "tinybert4", "prediction"], "models/students/tinybert4",
                            ["tinybert_intermediate"]),
    "minilmv2_intermediate": ("distill", ["minilmv2", "minilm4", "intermediate"], "models/steps/minilm4/intermediate",
                              []),
    "minilmv2_prediction": ("distill", ["minilmv2", "minilm4", "prediction"], "models/students/minilm4",
                            ["minilmv2_intermediate"]),
    "lrc_intermediate": ("distill", ["lrc", "lrc4", "intermediate"], "models/steps/lrc4/intermediate", []),
    "lrc_prediction": ("distill", ["lrc", "lrc4", "prediction"], "models/students/lrc4", ["lrc_intermediate"]),
    "lrc_bank_intermediate": ("distill", ["lrc", "lrc4_bank", "intermediate"], "models/steps/lrc4_bank/intermediate",
                              []),
    "lrc_bank_prediction": ("distill", ["lrc", "lrc4_bank", "prediction"], "models/students/lrc4_bank",
                            ["lrc_bank_intermediate"]),
}


def run_stage(module: str, args: list[str]) -> None:
    import importlib

    importlib.import_module(f"stages.{module}").main(list(args))


ORIGINAL_MAKE = training.make_trainer


class Crash(Exception):
    """Stands for a killed process: raised right after the first checkpoint is written."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_mlm_teacher):
    """Upstream artifacts for every training stage; the uninterrupted outputs are made later, per job."""
    ws = tmp_path_factory.mktemp("resume")
    repo = ws / "repo"
    repo.mkdir()
    write_params(repo, deep_merge(RESUME, {"teacher": {"pretrained": str(tiny_mlm_teacher)},  # inputs from this checkout
                                           "data": {"source": str(SST2)}, "augment": {"tang": {"nltk_data": str(NLTK_DATA)}},
                                           "general_distill": {"corpus": str(WIKITEXT)}}))
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        for module, args in (("prepare", []), ("augment", ["tang"]), ("augment", ["tinybert"]), ("teacher_finetune", []),
                             ("teacher_logits", []),
                             *(("general_distill", [o]) for o in ("tinybert", "minilmv2", "distilbert"))):
            run_stage(module, args)
        yield repo
    finally:
        os.chdir(cwd)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(folder / "model.safetensors")),
            **({"projection": load_file(str(folder / "distill_projection.safetensors"))}
               if (folder / "distill_projection.safetensors").is_file() else {})}


def trainer_spy(monkeypatch, crash_at: int | None) -> list:
    """Record what each Trainer resumed from; with `crash_at`, raise Crash right after the checkpoint of
    that step is saved."""
    from transformers import TrainerCallback

    resumed: list = []
    make = ORIGINAL_MAKE

    class CrashAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= crash_at:
                raise Crash(state.global_step)

    def spying_make(terms, **kwargs):
        trainer = make(terms, **kwargs)
        if crash_at is not None:
            trainer.add_callback(CrashAfterSave())
        train = trainer.train

        def recording_train(resume_from_checkpoint=None, **kw):
            resumed.append(resume_from_checkpoint)
            return train(resume_from_checkpoint=resume_from_checkpoint, **kw)

        trainer.train = recording_train
        return trainer

    monkeypatch.setattr(training, "make_trainer", spying_make)
    return resumed


@pytest.mark.parametrize("job", list(JOBS))
def test_a_crashed_training_stage_resumes_to_the_same_weights(workspace, monkeypatch, job):
    module, args, out, needs = JOBS[job]
    out = workspace / out
    for need in needs:  # the step before, when this test runs alone
        if not (workspace / JOBS[need][2]).exists():
            run_stage(*JOBS[need][:2])

    trainer_spy(monkeypatch, None)
    run_stage(module, args)  # uninterrupted
    reference = weights(out)
    history = json.loads((workspace / _history(job, args)).read_text())
    total = history[-1]["step"]
    assert total > K, f"{job}: only {total} steps; the crash must come before the end"
    shutil.rmtree(out)

    trainer_spy(monkeypatch, K)
    with pytest.raises(Crash):
        run_stage(module, args)
    assert not out.exists()  # no final artifact from the crashed run
    checkpoints = [p for p in workspace.glob("checkpoints/**/checkpoint-*") if p.is_dir()]
    assert [p.name for p in checkpoints] == [f"checkpoint-{K}"]

    resumed = trainer_spy(monkeypatch, None)
    run_stage(module, args)
    assert resumed == [str(checkpoints[0].relative_to(workspace))]
    history = json.loads((workspace / _history(job, args)).read_text())
    assert history[-1]["step"] == total and history[-1]["step"] == max(h["step"] for h in history)
    assert not list(workspace.glob("checkpoints/**/checkpoint-*"))  # only run.json is left
    assert not list(out.parent.glob(".*tmp*"))
    again = weights(out)
    assert again.keys() == reference.keys()
    assert all(torch.equal(again[k], reference[k]) for k in reference if k != "projection")
    if "projection" in reference:
        assert all(torch.equal(again["projection"][k], v) for k, v in reference["projection"].items())


def _history(job: str, args: list[str]) -> str:
    if job == "teacher":
        return "reports/history/teacher.json"
    if job.startswith("general_"):
        return f"reports/history/general_distill_{args[0]}.json"
    name = args[1]
    return f"reports/history/{name}.json" if len(args) == 2 or args[2] == "prediction" \
        else f"reports/history/{name}_{args[2]}.json"
