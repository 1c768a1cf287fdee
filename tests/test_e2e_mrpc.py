"""A sentence-pair task end to end by params alone (its own file, so it runs beside the main DAG tests)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from conftest import ALL_STAGES, DROP, LEAN, REPORT_ROWS, dvc, lean_rows, make_repo, needs_shared

from pipeline.params.config import deep_merge
from pipeline.tasks import imbalanced, preset_task

pytestmark = [pytest.mark.e2e, needs_shared]


def test_mrpc_needs_only_params(tmp_path, tiny_teacher):
    import datasets

    # one student per kind of encoder (BiLSTM; BERT with token types; DistilBERT without): pairs through
    # every method and TinyBERT's augmenter are the slow suite's and test_augment_tinybert's
    repo = make_repo(tmp_path, tiny_teacher, deep_merge(LEAN, {
        "data": {"task": "mrpc", "source": "../shared/data/glue/MRPC", "max_train": 80, "max_dev": 40},
        "augment": {"methods": ["tang"]}, "tang": {"bilstm_nokd": DROP}}))
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(repo, "repro").stdout))
    assert ran == lean_rows(ALL_STAGES) - {"augment@tinybert", "tang@bilstm_nokd"}
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["task"] == "mrpc"
    prepared = json.loads((repo / "data/prepared/meta.json").read_text())
    assert prepared["task"]["is_pair"] and prepared["rows"]["train"] == 80
    # augmented pairs reached the teacher and the students: both sides, every row
    logits = datasets.load_from_disk(str(repo / "data/teacher_logits"))
    augmented = logits.filter(lambda origin: origin == "tang", input_columns="origin")
    kept = json.loads((repo / "reports/augment/tang.json").read_text())["kept"]
    assert len(augmented) == kept > 80 and all(augmented["text_pair"]) and all(logits["text_pair"])
    assert json.loads((repo / "reports/students/bilstm_kd.json").read_text())["train_rows"] == 80 + kept
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["task"] == "mrpc" and metrics["main_metric"] == "dev_f1"
    assert set(metrics["models"]) == {r for r in lean_rows(REPORT_ROWS) if not r.startswith("bilstm_nokd")}
    labels = datasets.load_from_disk(str(repo / "data/prepared"))["train"]["label"]
    recalls = {"dev_recall_not_equivalent", "dev_recall_equivalent"} if imbalanced(preset_task("mrpc"), labels) \
        else set()  # MRPC's 68/32 classes, as the sample of 80 has them
    for row in metrics["models"].values():
        quality = json.loads((repo / "exports" / row["model"] / "export.json").read_text())["quality"][row["runtime"]]
        assert set(quality) == {"dev_accuracy", "dev_f1"} | recalls and {k: row[k] for k in quality} == quality
        teacher_f1 = metrics["models"]["teacher"]["dev_f1"]
        assert row["retention"] == (round(row["dev_f1"] / teacher_f1, 4) if teacher_f1 else None)
    config = json.loads((repo / "models/students/bilstm_kd/config.json").read_text())
    assert config["model"]["is_pair"] is True
