"""Report pieces that the end-to-end run cannot pin exactly: the Pareto front and the figures."""

from __future__ import annotations

import json

from pipeline.plots import pareto_front, plot_accuracy_latency, plot_sizes, plot_training_curves


def test_pareto_front_keeps_only_undominated_models():
    points = [("teacher", 18.0, 0.86), ("bilstm", 1.2, 0.82), ("tiny:int8", 3.0, 0.84), ("tiny", 6.0, 0.84),
              ("slow_bad", 20.0, 0.80), ("fast_bad", 1.0, 0.70)]
    assert pareto_front(points) == ["fast_bad", "bilstm", "tiny:int8", "teacher"]


def test_figures_are_written(tmp_path):
    report = {"task": "sst2", "main_metric": "dev_accuracy", "threads": 2, "models": {
        "teacher": {"runtime": "torch", "dev_accuracy": 0.86, "latency_ms_b1": 18.0, "size_mb": 87.0},
        "s": {"runtime": "torch", "dev_accuracy": 0.82, "latency_ms_b1": 4.0, "size_mb": 55.0},
        "s:int8": {"runtime": "int8", "dev_accuracy": 0.81, "latency_ms_b1": 2.0, "size_mb": 14.0}}}
    assert plot_accuracy_latency(report, tmp_path / "a.png") == ["s:int8", "s", "teacher"]
    plot_sizes(report, tmp_path / "b.png")
    history = tmp_path / "h.json"
    history.write_text(json.dumps([{"step": 50, "loss": 0.7}, {"step": 100, "loss": 0.5},
                                   {"step": 100, "eval_accuracy": 0.8, "eval_loss": 0.4}]))
    plot_training_curves({"s": history, "missing": tmp_path / "nope.json"}, tmp_path / "c.png")
    for name in ("a", "b", "c"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_quality_splits_follow_the_param_and_always_keep_dev():
    from pipeline.report import quality_splits

    prepared = {"train": "T", "dev": "D", "test": "X"}
    assert quality_splits(prepared, ["dev"]) == {"dev": "D"}
    assert quality_splits(prepared, ["train"]) == {"train": "T", "dev": "D"}
    assert quality_splits({"train": "T", "dev": "D"}, ["train", "dev", "test"]) == {"train": "T", "dev": "D"}
