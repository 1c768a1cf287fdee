"""Budgets that fit the task: `epochs` raised to `min_steps` or cut to `max_steps` optimizer steps, the steps
taken and why in each stage's report, and the teacher's best dev evaluation kept (`teacher.keep_best`)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from conftest import SST2
from test_teacher import given_teacher

from pipeline.errors import ConfigError
from pipeline.params.config import Params, deep_merge, parse_params
from pipeline.params.schema import MIN_TASK_STEPS
from pipeline.training.driver import BestWeights, planned_steps


def budget(**keys):
    return SimpleNamespace(**{"epochs": 1.0, "batch_size": 32, "min_steps": 0, "max_steps": None, **keys})


@pytest.mark.parametrize("rows, keys, steps, why", [
    (200, {}, 7, "epochs: 1 epoch(s) of 200 rows at batch 32 are 7 steps"),  # the last batch is short
    (200, {"epochs": 2.5}, 18, "epochs: 2.5 epoch(s) of 200 rows at batch 32 are 18 steps"),
    (200, {"min_steps": 250}, 250, "min_steps 250: 1 epoch(s) of 200 rows at batch 32 are 7 steps"),
    (200, {"min_steps": 5}, 7, "epochs: 1 epoch(s) of 200 rows at batch 32 are 7 steps"),
    (100_000, {"max_steps": 1000}, 1000, "max_steps 1000: 1 epoch(s) of 100000 rows at batch 32 are 3125 steps"),
])
def test_a_budget_gives_its_epochs_within_the_floor_and_the_ceiling(rows, keys, steps, why):
    assert planned_steps(rows, budget(**keys)) == (steps, why)


def test_the_teacher_and_every_students_task_step_have_a_floor_by_default():
    params = Params()
    assert params.teacher.min_steps == MIN_TASK_STEPS
    assert params.distilbert["distil3"].min_steps == MIN_TASK_STEPS
    assert params.tang["bilstm_kd"].min_steps == MIN_TASK_STEPS
    for method in ("tinybert", "minilmv2", "lrc"):
        student = next(iter(getattr(params, method).values()))
        assert student.prediction.min_steps == MIN_TASK_STEPS and student.intermediate.min_steps == 0


@pytest.mark.parametrize("overlay, where", [
    ({"teacher": {"min_steps": 300, "max_steps": 200}}, "teacher"),
    ({"general_distill": {"min_steps": 300, "max_steps": 200}}, "general_distill"),
    ({"tinybert": {"tinybert4": {"prediction": {"min_steps": 300, "max_steps": 200}}}}, "tinybert4.prediction"),
])
def test_a_floor_above_the_ceiling_is_refused_naming_the_section(overlay, where):
    with pytest.raises(ConfigError, match=rf"{where}.*min_steps \(300\) is above max_steps \(200\)"):
        parse_params(deep_merge(Params().model_dump(), overlay))


def test_a_200_row_task_gets_min_steps_updates_and_keeps_its_best_dev_evaluation(tmp_path, monkeypatch):
    import stages.prepare
    import stages.teacher_finetune
    from pipeline.params.profile import render_params

    teacher = given_teacher(tmp_path / "pretrained", {0: "negative", 1: "positive"})
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    params = parse_params(deep_merge(Params().model_dump(), {
        "data": {"source": str(SST2), "max_train": 200, "max_dev": 40},
        "teacher": {"pretrained": str(teacher), "max_rows": None, "batch_size": 32, "min_steps": 30,
                    "eval_steps": 10, "learning_rate": 1e-3}}))
    (run / "params.yaml").write_text(render_params(params))
    stages.prepare.main([])
    stages.teacher_finetune.main([])

    report = json.loads((run / "reports/teacher.json").read_text())
    assert report["steps"] == 30 and report["train_rows"] == 200
    assert report["steps_why"] == "min_steps 30: 1 epoch(s) of 200 rows at batch 32 are 7 steps"
    assert report["epochs_run"] == pytest.approx(30 / 7, abs=0.01)
    history = json.loads((run / "reports/history/teacher.json").read_text())
    evaluations = {h["step"]: h["eval_accuracy"] for h in history if "eval_accuracy" in h}
    assert sorted(evaluations) == [10, 20, 30]
    best_step = min(evaluations, key=lambda s: (-evaluations[s], s))  # the first of the best
    kept = best_step if evaluations[best_step] > evaluations[30] else 30  # on a tie the last step stays
    assert report["dev_accuracy"] == pytest.approx(evaluations[kept], abs=1e-4)
    assert report.get("kept_step", 30) == kept and report.get("kept_step") != 30


class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def test_the_best_evaluation_is_kept_across_a_resume_and_nan_counts_as_worst(tmp_path):
    model = Scale()
    evaluations = [(1, math.nan), (2, 0.6), (3, 0.8), (4, 0.7)]
    for step, value in evaluations:
        keeper = BestWeights(tmp_path, "accuracy")  # a new one each time: as after a resume
        with torch.no_grad():
            model.w.fill_(step)
        keeper.callback().on_evaluate(None, SimpleNamespace(global_step=step), None,
                                      metrics={"eval_accuracy": value, "eval_loss": 1.0 / step}, model=model)
    final = {"eval_accuracy": 0.7, "eval_loss": 0.25}
    metrics, step = BestWeights(tmp_path, "accuracy").restore(model, final, 4)
    assert step == 3 and metrics["eval_accuracy"] == 0.8 and metrics["eval_loss"] == pytest.approx(1 / 3)
    assert torch.equal(model.w, torch.full((2,), 3.0))  # step 3's weights, not the last step's
    # where the last step is the best, nothing changes
    assert BestWeights(tmp_path, "accuracy").restore(model, {"eval_accuracy": 0.9}, 5) == ({"eval_accuracy": 0.9}, 5)


def test_the_budgets_benchmark_turns_every_floor_off_and_tables_each_models_gain():
    from benchmarks.budgets import epochs_alone, markdown, result
    from pipeline.params.config import flatten, parse_params

    off = epochs_alone(Params().model_dump())
    assert off["teacher.keep_best"] is False and off["teacher.min_steps"] == 0
    assert off["tang.bilstm_nokd.min_steps"] == 0 and off["tinybert.tinybert4.prediction.min_steps"] == 0
    edited = flatten(parse_params(deep_merge(Params().model_dump(), _nested(off))).model_dump())
    assert not any(v for k, v in edited.items() if k.endswith(".min_steps"))

    rev = {"data": {"metrics": {
        "reports/teacher.json": {"data": {"steps": 250, "steps_why": "min_steps 250: ...", "kept_step": 174}},
        "reports/metrics.json": {"data": {"main_metric": "dev_f1", "baseline": {"predicts": "equivalent", "dev_f1": 0.8},
                                          "models": {"teacher": {"dev_f1": 0.88}, "teacher:int8": {"dev_f1": 0.87},
                                                     "distil3": {"dev_f1": 0.84, "gain_share": 0.5}}}}}}}
    table = markdown({("mrpc", "floors"): result(rev)}, 42)
    assert "| task | budgets | teacher steps | metric | baseline | teacher | distil3 |" in table
    assert "| mrpc | floors | 250 (best: 174) | dev_f1 | 80.00 | 88.00 (+8.00) | 84.00 (+4.00, 50%) |" in table


def _nested(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def test_the_results_page_quotes_the_committed_budgets_benchmark():
    """The teacher's steps and metric docs/results.md quotes for each small task are those of reports/budgets.md."""
    import re

    from conftest import ROOT

    table = (ROOT / "reports/budgets.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\S+) \| (epochs alone|floors) \| (\d+)(?: \(best: \d+\))? \| \w+ \| ([\d.]+) \| ([\d.]+) ",
                      table, re.M)
    page = " ".join((ROOT / "docs/results.md").read_text(encoding="utf-8").split())
    quote = page[page.index("## Small tasks"):page.index("## Unlabelled text")]
    assert rows
    for task, condition, steps, baseline, teacher in rows:
        assert f"{steps} steps and {teacher}" in quote and f"baseline {baseline}" in quote, (task, condition)
