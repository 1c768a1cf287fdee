"""Evaluate the teacher and every student side by side (stage `evaluate`): quality per runtime (measured
by the export stage on what is served), retention, size, and CPU speed.

Speed is measured from raw text to logits (tokenisation included, as in serving), in one process
with a fixed number of threads, models interleaved within each repetition so that drift of the
machine affects all of them alike; medians over repetitions are reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pipeline.errors import ModelError
from pipeline.params.config import EvaluateConfig
from pipeline.serving.runtimes import Predictor, export_info, load_export, weights_size

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
    """Per predictor, medians over cfg.repeats interleaved repetitions: latency at batch 1 (ms) and
    throughput at cfg.batch_size (examples/s), from raw text (tokenisation included, as served) and of the
    model alone (on batches tokenised beforehand)."""
    torch.set_num_threads(cfg.threads)
    n_lat = min(cfg.latency_samples, len(texts))
    n_thr = min(len(texts), cfg.batch_size * cfg.throughput_batches)
    thr_pairs = pairs[:n_thr] if pairs else None
    keys = ("latency_ms_b1", f"throughput_b{cfg.batch_size}", "model_latency_ms_b1", f"model_throughput_b{cfg.batch_size}")
    runs: dict[str, dict[str, list[float]]] = {p.name: {k: [] for k in keys} for p in predictors}
    singles = {p.name: [p.batches(texts[i:i + 1], pairs[i:i + 1] if pairs else None, 1) for i in range(n_lat)]
               for p in predictors}
    batched = {p.name: p.batches(texts[:n_thr], thr_pairs, cfg.batch_size) for p in predictors}

    def measure(p: Predictor) -> tuple[float, ...]:
        raw_b1 = statistics.median(_timed(lambda i=i: p.logits(texts[i:i + 1], pairs[i:i + 1] if pairs else None, 1))
                                   for i in range(n_lat))
        raw_bn = _timed(lambda: p.logits(texts[:n_thr], thr_pairs, cfg.batch_size))
        model_b1 = statistics.median(_timed(lambda b=b: [p.run(feeds) for _, feeds in b]) for b in singles[p.name])
        model_bn = _timed(lambda: [p.run(feeds) for _, feeds in batched[p.name]])
        return 1000 * raw_b1, n_thr / raw_bn, 1000 * model_b1, n_thr / model_bn

    for p in predictors:
        for _ in range(cfg.warmup):
            p.logits(texts[: cfg.batch_size], pairs[: cfg.batch_size] if pairs else None, cfg.batch_size)
    with tqdm(total=cfg.repeats * len(predictors), desc="timing", unit="model-run") as bar:
        for _ in range(cfg.repeats):
            for p in predictors:  # interleaved: every model sees the same machine state
                for key, value in zip(keys, measure(p)):
                    runs[p.name][key].append(value)
                bar.update()
    return {name: {key: round(statistics.median(values), 3 if "latency" in key else 1) for key, values in m.items()}
            for name, m in runs.items()}


def read_exports(exports: Path) -> dict[str, dict[str, Any]]:
    """The export summaries (export.json) of a run, the teacher first, in the order they were made."""
    found = {p.name: export_info(p) for p in sorted(exports.iterdir()) if p.is_dir()} if exports.is_dir() else {}
    found = {name: info for name, info in found.items() if info}
    if REFERENCE not in found:
        raise ModelError(f"{exports / REFERENCE}: no exported teacher (run `dvc repro export`)")
    return dict(sorted(found.items(), key=lambda item: item[1].get("order", 0)))


SPEED_FLAGS = ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")  # what moves the timings


def cpu() -> dict[str, Any]:
    """The CPU the timings come from: its name, core count and the instruction sets that move them."""
    caps = torch.cpu.get_capabilities()
    return {"name": caps.get("cpu_name") or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "flags": [flag for flag in SPEED_FLAGS if caps.get(flag)]}


def evaluate_exports(exports: Path, texts: Sequence[str], pairs: Sequence[str] | None,
                     cfg: EvaluateConfig) -> dict[str, Any]:
    """One row per model (the teacher included) and served runtime: its quality (from the export),
    parameters, size, speed, retention of the teacher's quality, and speed-ups against the teacher in the
    same runtime and batch size."""
    summaries = read_exports(exports)
    teacher = summaries[REFERENCE]
    runs = [(name, r) for name in summaries for r in cfg.runtimes
            if r != "int8" or summaries[name]["int8"].get("served", True)]
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
    add_ratios(rows, main, cfg.batch_size)
    left_out = {name: s["int8"]["left_out"] for name, s in summaries.items() if s["int8"].get("left_out")}
    return {"task": teacher["task"]["name"], "main_metric": main, "reference": REFERENCE, "threads": cfg.threads,
            "torch_threads": torch.get_num_threads(), "cpu": cpu(), "batch_size": cfg.batch_size, "int8_left_out": left_out,
            "models": rows, "ablations": ablation_costs(summaries, rows, main)}


def ablation_costs(summaries: dict[str, dict[str, Any]], rows: dict[str, dict[str, Any]], main: str) -> dict[str, Any]:
    """Each ablation student's cost: the points of the main dev metric (PyTorch) it loses against the
    student it ablates, beside what the method's paper measured for the same change."""
    found = {}
    for name, summary in summaries.items():
        ablation = summary.get("card_info", {}).get("ablation")
        if ablation and ablation["base"] in rows and name in rows:
            cost = round(100 * (rows[ablation["base"]][main] - rows[name][main]), 2)
            found[name] = {**ablation, "points": cost}
    return found


def add_baseline(report: dict[str, Any], base: dict[str, Any]) -> None:
    """The baseline (tasks.baseline: what train's labels alone predict) beside the rows, and each row's gain
    over it as a share of the teacher's gain (None where the teacher gains nothing: a share means nothing)."""
    main = report["main_metric"]
    report["baseline"] = base
    span = report["models"][REFERENCE][main] - base[main]
    for row in report["models"].values():
        row["gain_share"] = round((row[main] - base[main]) / span, 4) if span > 0 else None


def warnings(report: dict[str, Any], students: dict[str, str], near: float, seed_spread: float) -> list[str]:
    """One line per thing a user can act on, each naming the key to change: a teacher within `near` points of
    the baseline (nothing to inherit), a student below the baseline, a student above the teacher by more than
    `seed_spread` points (an undertrained teacher). `students`: name -> its params key (PyTorch rows read)."""
    main, base = report["main_metric"], report["baseline"]
    teacher, floor = report["models"][REFERENCE][main], base[main]
    said = f"always {base['predicts']!r}" if isinstance(base["predicts"], str) else f"always {base['predicts']}"
    found = []
    if teacher - floor < near / 100:
        found.append(f"teacher: {main} {100 * teacher:.2f} is within {near:g} points of the baseline "
                     f"({100 * floor:.2f}, {said}): the students can inherit nothing; give the teacher more steps "
                     "(teacher.min_steps, teacher.epochs), more data (teacher.max_rows, data.max_train), or a stronger pretrained model "
                     "(teacher.pretrained)")
    for name, key in students.items():
        value = report["models"].get(name, {}).get(main)
        if value is None:
            continue
        if value < floor:
            found.append(f"{name}: {main} {100 * value:.2f} is below the baseline ({100 * floor:.2f}, {said}): it "
                         f"learnt less than train's labels alone tell; give it more steps (the min_steps, epochs and "
                         f"max_rows of {key}) or a better teacher")
        elif (value - teacher) * 100 > seed_spread:
            found.append(f"{name}: {main} {100 * value:.2f} beats the teacher's {100 * teacher:.2f} by "
                         f"{100 * (value - teacher):.2f} points, more than evaluate.seed_spread ({seed_spread:g}): "
                         "the teacher is undertrained; give it more steps (teacher.min_steps, teacher.epochs, "
                         "teacher.max_rows) or more "
                         "data (data.max_train)")
    return found


def latency(report: dict[str, Any], row: dict[str, Any], batch: int) -> float:
    """A report row's latency in ms: at batch 1, or per batch of the report's batch size (from its throughput)."""
    if batch == 1:
        return row["latency_ms_b1"]
    b = report["batch_size"]
    return round(1000 * b / row[f"throughput_b{b}"], 3)


SPEEDS = {"speedup_b1": "latency_ms_b1", "model_speedup_b1": "model_latency_ms_b1"}  # lower is faster


def add_ratios(rows: dict[str, dict[str, Any]], main: str, batch_size: int) -> None:
    """Each row's ratios to the teacher: retention of its quality (in PyTorch; None where the teacher's is
    0 or below, as a correlation can be, and a ratio means nothing), compression of its parameters, and
    speed-ups against the teacher in the same runtime (None when the teacher has no row in that runtime)."""
    ref = rows[REFERENCE]
    speeds = {**SPEEDS, "speedup_throughput": f"throughput_b{batch_size}",
              "model_speedup_throughput": f"model_throughput_b{batch_size}"}
    for row in rows.values():
        row["retention"] = round(row[main] / ref[main], 4) if ref[main] > 0 else None
        row["compression"] = round(ref["parameters"] / row["parameters"], 2)
        same = rows.get(row_name(REFERENCE, row["runtime"]))
        for ratio, key in speeds.items():
            if same is None or key not in row:
                row[ratio] = None
            else:
                row[ratio] = round(same[key] / row[key] if ratio in SPEEDS else row[key] / same[key], 2)


COLUMNS = [
    ("model", "model"), ("runtime", "runtime"), ("main", "metric"), ("retention", "retention"),
    ("gain_share", "gain share"), ("parameters", "params"),
    ("compression", "smaller"), ("size_mb", "MB"), ("latency_ms_b1", "ms @b1"), ("speedup_b1", "x @b1"),
    ("throughput", "ex/s"), ("speedup_throughput", "x ex/s"), ("model_throughput", "model ex/s"),
    ("model_speedup_throughput", "x model"),
]


def markdown_table(report: dict[str, Any]) -> str:
    main, b = report["main_metric"], report["batch_size"]
    header = [{"main": main, "throughput": f"ex/s @b{b}", "model_throughput": f"model-only ex/s @b{b}"}.get(key, label)
              for key, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in report["models"].items():
        cells = []
        for key, _ in COLUMNS:
            value = {"model": row.get("model", name), "main": row[main], "throughput": row[f"throughput_b{b}"],
                     "model_throughput": row[f"model_throughput_b{b}"]}.get(key, row.get(key))
            if key in ("main", "retention", "gain_share") and value is not None:
                value = f"{100 * value:.2f}" + ("" if key == "main" else "%")
            elif key == "parameters":
                value = f"{value / 1e6:.2f}M"
            cells.append("n/a" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    base = report.get("baseline")
    if base is not None:
        cells = [f"baseline (always {base['predicts']})", "-", f"{100 * base[main]:.2f}"] + ["-"] * (len(COLUMNS) - 3)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recall_table(report: dict[str, Any]) -> str | None:
    """Each model's (PyTorch) recall of every class, where the export measured it (imbalanced classes)."""
    recalls = {name: {k.removeprefix("dev_recall_"): v for k, v in row.items() if k.startswith("dev_recall_")}
               for name, row in report["models"].items() if row["runtime"] == "torch"}
    labels = next((list(r) for r in recalls.values() if r), None)
    if not labels:
        return None
    lines = ["| model | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(f"{100 * r[label]:.2f}" for label in labels) + " |"
              for name, r in recalls.items() if r]
    return "\n".join(lines)
