"""A baseline to beat and warnings a user can act on: what train's labels alone predict (the majority class,
the mean score), each model's gain over it as a share of the teacher's, each class's recall where classes
are imbalanced, and one line naming the key to change when the teacher is near the baseline, a student
falls below it, or a student beats the teacher by more than the seed spread."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.report.evaluate import add_baseline, markdown_table, warnings
from pipeline.report.outputs import render_report
from pipeline.tasks import Task, baseline, imbalanced, preset_task, recall_by_class

SST = preset_task("sst2")
THREE = Task("intents", "classification", ("book", "cancel", "ask"), ("accuracy", "f1_macro"), False)


def test_the_baseline_predicts_trains_majority_class_or_mean_score():
    base = baseline(SST, [1, 1, 0, 1, -1], [0, 1, 1, 1])  # an unlabelled train row does not vote
    assert base == {"predicts": "positive", "dev_accuracy": 0.75}
    base = baseline(THREE, [2, 2, 0, 1, 2], [0, 1, 2, 2, 2, 2])
    assert base["predicts"] == "ask" and base["dev_accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert base["dev_f1_macro"] == pytest.approx((2 * 4 / (4 + 6)) / 3, abs=1e-4)  # ask's F1 alone, over 3 classes
    stsb = preset_task("stsb")
    base = baseline(stsb, [1.0, 3.0, float("nan")], [0.5, 4.0, 2.0])
    assert base["predicts"] == 2.0 and base["dev_pearson"] == 0.0  # a constant correlates with nothing


def test_per_class_recall_where_classes_are_imbalanced():
    assert not imbalanced(SST, [0] * 44 + [1] * 56) and imbalanced(SST, [0] * 32 + [1] * 68)
    assert imbalanced(THREE, [0] * 50 + [1] * 45 + [2] * 2) and not imbalanced(preset_task("stsb"), [0.5, 1.0])
    logits = np.eye(3)[[0, 0, 0, 1, 1, 0]]  # never predicts "ask"
    recall = recall_by_class(THREE, logits, np.array([0, 0, 1, 1, 2, 2]))
    assert recall == {"book": 1.0, "cancel": 0.5, "ask": 0.0}


def report_of(teacher: float, **students: float) -> dict:
    rows = {"teacher": {"model": "teacher", "runtime": "torch", "dev_accuracy": teacher}}
    rows.update({name: {"model": name, "runtime": "torch", "dev_accuracy": v} for name, v in students.items()})
    for row in rows.values():
        row.update(parameters=1_000_000, throughput_b32=1.0, model_throughput_b32=1.0, retention=1.0)
    return {"task": "sst2", "main_metric": "dev_accuracy", "reference": "teacher", "threads": 2, "batch_size": 32,
            "models": rows}


def test_gain_share_shows_a_teacher_near_the_baseline_for_what_it_is():
    report = report_of(0.90, good=0.88, poor=0.60)
    add_baseline(report, {"predicts": "positive", "dev_accuracy": 0.50})
    assert report["models"]["good"]["gain_share"] == pytest.approx(0.95)
    assert report["models"]["poor"]["gain_share"] == pytest.approx(0.25)
    flat = report_of(0.50, s=0.52)
    add_baseline(flat, {"predicts": "positive", "dev_accuracy": 0.51})
    assert flat["models"]["s"]["gain_share"] is None  # the teacher gained nothing: no share
    assert "| baseline (always positive) | - | 50.00 |" in markdown_table(report)


def test_warnings_name_what_to_change():
    report = report_of(0.52, below=0.45, fine=0.515)
    add_baseline(report, {"predicts": "positive", "dev_accuracy": 0.509})
    found = warnings(report, {"below": "tinybert.below", "fine": "tang.fine"}, near=5.0, seed_spread=1.0)
    assert found[0].startswith("teacher: dev_accuracy 52.00 is within 5 points of the baseline (50.90, always "
                               "'positive'): the students can inherit nothing") and "(teacher.min_steps, teacher.epochs)" in found[0]
    assert found[1].startswith("below: dev_accuracy 45.00 is below the baseline (50.90, always 'positive')")
    assert "tinybert.below" in found[1] and len(found) == 2
    strong = report_of(0.906, student=0.934, close=0.912)
    add_baseline(strong, {"predicts": "book", "dev_accuracy": 0.40})
    (line,) = warnings(strong, {"student": "minilmv2.student", "close": "tang.close"}, near=5.0, seed_spread=1.0)
    assert line.startswith("student: dev_accuracy 93.40 beats the teacher's 90.60 by 2.80 points, more than "
                           "evaluate.seed_spread (1): the teacher is undertrained")
    strong["warnings"] = [line]
    text = render_report({**strong, "pareto_front": [], "int8_left_out": {}})
    assert text.index("**Warnings**") < text.index("| model |") and f"- {line}" in text
    assert warnings(strong, {}, near=5.0, seed_spread=5.0) == []
