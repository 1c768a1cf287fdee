"""A sentence-pair task end to end by params alone (its own file, so it runs beside the main DAG tests)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipeline.config import deep_merge

from conftest import LEAN, REPORT_ROWS, dvc, lean_rows, make_repo

pytestmark = pytest.mark.e2e


def test_mrpc_needs_only_params(tmp_path, tiny_teacher):
    repo = make_repo(tmp_path, tiny_teacher, deep_merge(LEAN, {
        "data": {"task": "mrpc", "source": "../shared/data/glue/MRPC", "max_train": 80, "max_dev": 40}}))
    ran = set(re.findall(r"Running stage '([^']+)'", dvc(repo, "repro").stdout))
    assert "prepare" in ran and "evaluate" in ran
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["task"] == "mrpc" and metrics["main_metric"] == "dev_f1"
    assert set(metrics["models"]) == lean_rows(REPORT_ROWS)
    assert all("dev_accuracy" in row and "dev_f1" in row for row in metrics["models"].values())
    prepared = json.loads((repo / "data/prepared/meta.json").read_text())
    assert prepared["is_pair"] and prepared["rows"]["train"] == 80
    config = json.loads((repo / "models/students/bilstm_kd/config.json").read_text())
    assert config["model"]["is_pair"] is True
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["task"] == "mrpc"
