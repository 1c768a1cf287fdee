"""experiment_rows: one row per named experiment, from every commit, the latest run of a name."""

from __future__ import annotations

import json

from pipeline.orchestration import flows


def _rev(name: str, timestamp: str, accuracy: float) -> dict:
    metrics = {"main_metric": "dev_accuracy", "reference": "teacher",
               "models": {"teacher": {"dev_accuracy": 0.9}, "s": {"dev_accuracy": accuracy, "retention": accuracy / 0.9}}}
    return {"name": name, "data": {"timestamp": timestamp, "params": {"params.yaml": {"data": {"seed": 1}}},
                                   "metrics": {"reports/metrics.json": {"data": metrics}}}}


def test_a_name_run_on_two_commits_counts_once_with_its_latest_run(monkeypatch):
    shown = [  # the newer commit's experiments are listed after an older run of the same name
        {"rev": "old", "experiments": [{"revs": [_rev("seed-1", "2026-12-01T12:00:00", 0.5)]}]},
        {"rev": "new", "experiments": [{"revs": [_rev("seed-1", "2026-12-01T18:00:00", 0.8),
                                                 _rev("other", "2026-12-01T18:00:00", 0.1)]}]},
    ]
    monkeypatch.setattr(flows, "run_dvc", lambda repo, *args: json.dumps(shown))
    rows = flows.experiment_rows(".", ["seed-1"], ["seed"])
    assert rows == [{"experiment": "seed-1", "seed": 1, "teacher dev_accuracy": 0.9, "s dev_accuracy": 0.8,
                     "s retention": 0.8 / 0.9}]
