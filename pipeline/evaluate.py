"""Evaluate the teacher and every student side by side (stage `evaluate`): quality per runtime (measured
by the export stage on what is served), retention, size, and CPU speed.

Speed is measured from raw text to logits (tokenisation included, as in serving), in one process
with a fixed number of threads, models interleaved within each repetition so that drift of the
machine affects all of them alike; medians over repetitions are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pipeline.config import EvaluateConfig
from pipeline.errors import ModelError
from pipeline.runtimes import Predictor, export_info, load_export, weights_size

RUNTIME_SEP = ":"  # row names: "tinybert4" (PyTorch), "tinybert4:onnx", "tinybert4:int8"
REFERENCE = "teacher"


def row_name(model: str, runtime: str) -> str:
    return model if runtime == "torch" else f"{model}{RUNTIME_SEP}{runtime}"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_speed(predictors: Sequence[Predictor], texts: Sequence[str], pairs: Sequence[str] | None,
                  cfg: EvaluateConfig) -> dict[str, dict[str, float]]:
    """Median latency at batch 1 (ms) and throughput at cfg.batch_size (examples/s) per predictor."""
    torch.set_num_threads(cfg.threads)
    n_lat = min(cfg.latency_samples, len(texts))
    n_thr = min(len(texts), cfg.batch_size * 8)
    lat: dict[str, list[float]] = {p.name: [] for p in predictors}
    thr: dict[str, list[float]] = {p.name: [] for p in predictors}

    def one_by_one(p: Predictor) -> list[float]:
        return [_timed(lambda i=i: p.logits(texts[i:i + 1], pairs[i:i + 1] if pairs else None, 1))
                for i in range(n_lat)]

    def batched(p: Predictor) -> float:
        return _timed(lambda: p.logits(texts[:n_thr], pairs[:n_thr] if pairs else None, cfg.batch_size))

    for p in predictors:
        for _ in range(cfg.warmup):
            p.logits(texts[: cfg.batch_size], pairs[: cfg.batch_size] if pairs else None, cfg.batch_size)
    with tqdm(total=cfg.repeats * len(predictors), desc="timing", unit="model-run") as bar:
        for _ in range(cfg.repeats):
            for p in predictors:  # interleaved: every model sees the same machine state
                lat[p.name].append(statistics.median(one_by_one(p)) * 1000)
                thr[p.name].append(n_thr / batched(p))
                bar.update()
    return {p.name: {"latency_ms_b1": round(statistics.median(lat[p.name]), 3),
                     f"throughput_b{cfg.batch_size}": round(statistics.median(thr[p.name]), 1)}
            for p in predictors}


def read_exports(exports: Path) -> dict[str, dict[str, Any]]:
    """The export summaries (export.json) of a run, the teacher first, in the order they were made."""
    found = {p.name: export_info(p) for p in sorted(exports.iterdir()) if p.is_dir()} if exports.is_dir() else {}
    found = {name: info for name, info in found.items() if info}
    if REFERENCE not in found:
        raise ModelError(f"{exports / REFERENCE}: no exported teacher (run `dvc repro export`)")
    return dict(sorted(found.items(), key=lambda item: item[1].get("order", 0)))


def evaluate_exports(exports: Path, texts: Sequence[str], pairs: Sequence[str] | None,
                     cfg: EvaluateConfig) -> dict[str, Any]:
    """One row per model and runtime: its quality (from the export), parameters, size, speed, and its
    ratios to the teacher (in PyTorch)."""
    summaries = read_exports(exports)
    teacher = summaries[REFERENCE]
    runs = [(REFERENCE, "torch")] + [(name, r) for name in summaries if name != REFERENCE for r in cfg.runtimes]
    predictors = [load_export(exports / name, runtime, name=row_name(name, runtime), threads=cfg.threads)
                  for name, runtime in runs]
    speed = measure_speed(predictors, texts, pairs, cfg)
    main = f"dev_{teacher['task']['metrics'][0]}"
    rows: dict[str, dict[str, Any]] = {}
    for (name, runtime), p in zip(runs, predictors):
        summary = summaries[name]
        rows[p.name] = {"model": name, "runtime": runtime, **summary["quality"][runtime],
                        "parameters": summary["parameters"], "size_mb": round(weights_size(p) / 2**20, 2),
                        **speed[p.name], "onnx_parity_max_abs_diff": summary["onnx"]["max_abs_diff"]}
    add_ratios(rows, main, f"throughput_b{cfg.batch_size}")
    return {"task": teacher["task"]["name"], "main_metric": main, "reference": REFERENCE, "threads": cfg.threads,
            "torch_threads": torch.get_num_threads(), "models": rows}


def add_ratios(rows: dict[str, dict[str, Any]], main: str, thr_key: str) -> None:
    """Each row's ratios to the teacher's row: retention (of the main metric), speed-ups, compression."""
    ref = rows[REFERENCE]
    for row in rows.values():
        row["retention"] = round(row[main] / ref[main], 4) if ref[main] else None
        row["speedup_b1"] = round(ref["latency_ms_b1"] / row["latency_ms_b1"], 2)
        row["speedup_throughput"] = round(row[thr_key] / ref[thr_key], 2)
        row["compression"] = round(ref["parameters"] / row["parameters"], 2)


COLUMNS = [
    ("model", "model"), ("runtime", "runtime"), ("main", "metric"), ("retention", "retention"), ("parameters", "params"),
    ("compression", "smaller"), ("size_mb", "MB"), ("latency_ms_b1", "ms @b1"), ("speedup_b1", "x @b1"),
    ("throughput", "ex/s"), ("speedup_throughput", "x ex/s"),
]


def markdown_table(report: dict[str, Any]) -> str:
    main = report["main_metric"]
    thr_key = next(k for k in next(iter(report["models"].values())) if k.startswith("throughput_b"))
    header = [label if key != "main" else main for key, label in COLUMNS]
    header = [h if h != "ex/s" else f"ex/s @b{thr_key.removeprefix('throughput_b')}" for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in report["models"].items():
        cells = []
        for key, _ in COLUMNS:
            value = {"model": row.get("model", name), "main": row[main], "throughput": row[thr_key]}.get(key, row.get(key))
            if key in ("main", "retention") and value is not None:
                value = f"{100 * value:.2f}" + ("%" if key == "retention" else "")
            elif key == "parameters":
                value = f"{value / 1e6:.2f}M"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
