"""benchmarks/gpu.py: the stage table read from the stages' own log lines, and its refusal without a GPU."""

from __future__ import annotations

import pytest

LOG = """2026-12-07 11:00:01 pipeline INFO stage prepare  finished in 3.2 s, peak memory 812 MB
Running stage 'teacher_finetune':
2026-12-07 11:02:01 pipeline INFO stage teacher_finetune  finished in 118.4 s, peak memory 3,104 MB, GPU 2,048 MB
2026-12-07 11:04:01 pipeline INFO stage distill tinybert tinybert4 prediction finished in 95.0 s, peak memory 2,950 MB, GPU 1,536 MB
"""


def test_each_stage_log_line_is_a_row_with_its_time_and_memory_peaks():
    from benchmarks.gpu import stage_rows, table

    rows = stage_rows(LOG)
    assert rows == [{"stage": "prepare", "seconds": 3.2, "rss_mb": 812, "gpu_mb": None},
                    {"stage": "teacher_finetune", "seconds": 118.4, "rss_mb": 3104, "gpu_mb": 2048},
                    {"stage": "distill@tinybert tinybert4 prediction", "seconds": 95.0, "rss_mb": 2950, "gpu_mb": 1536}]
    metrics = {"main_metric": "dev_accuracy", "models": {"teacher": {"model": "teacher", "runtime": "torch",
                                                                     "dev_accuracy": 0.9}}}
    text = table(rows, metrics, "NVIDIA H100")
    assert "Device: NVIDIA H100" in text and "| teacher_finetune | 118.4 | 3,104 | 2,048 |" in text
    assert "| all stages | 216.6 | 3,104 | 2,048 |" in text and "| teacher | torch | 90.00 |" in text


def test_the_stage_line_the_benchmark_reads_is_the_one_stages_log(caplog, monkeypatch):
    import logging

    from conftest import ROOT

    from benchmarks.gpu import stage_rows
    from pipeline.orchestration.stage import stage

    monkeypatch.setenv("DISTILL_PARAMS", str(ROOT / "params.yaml"))
    caplog.set_level(logging.INFO, logger="pipeline")
    stage(lambda params, args: None)(["tinybert", "tinybert4", "prediction"])
    (row,) = stage_rows("\n".join(r.getMessage() for r in caplog.records))
    assert row["stage"].endswith("@tinybert tinybert4 prediction") and row["rss_mb"] > 0


def test_without_a_gpu_it_stops_before_running_anything(monkeypatch, tmp_path):
    from benchmarks import gpu

    monkeypatch.setattr(gpu, "device_name", lambda: None)
    with pytest.raises(SystemExit, match="no CUDA GPU is visible"):
        gpu.main(["--keep", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
