"""Evaluate the teacher and every student side by side: task metric, retention, size and CPU speed.

Speed is measured from raw text to logits (tokenisation included, as in serving), in one process
with a fixed number of threads, models interleaved within each repetition so that drift of the
machine affects all of them alike; medians over repetitions are reported.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.config import EvaluateConfig
from pipeline.data import texts_of
from pipeline.errors import ModelError
from pipeline.inference import classifier_logits
from pipeline.tasks import Task, compute_metrics


class Predictor(Protocol):
    name: str
    folder: Path

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray: ...

    def num_parameters(self) -> int: ...


@dataclass
class HFPredictor:
    """A Hugging Face sequence classifier folder (the teacher, Transformer students)."""

    name: str
    folder: Path
    max_length: int = 128

    def __post_init__(self) -> None:
        from pipeline.models.teacher import load_classifier, load_tokenizer

        self.model = load_classifier(str(self.folder), key=self.name).eval()
        self.tokenizer = load_tokenizer(str(self.folder), key=self.name)

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray:
        return classifier_logits(self.model, self.tokenizer, texts, pairs, batch_size=batch_size,
                                 max_length=self.max_length, progress=False)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class BiLSTMPredictor:
    """A BiLSTM student folder (pipeline.models.bilstm format)."""

    name: str
    folder: Path

    def __post_init__(self) -> None:
        from pipeline.models.bilstm import load_bilstm

        self.model, self.tokenizer, self.config = load_bilstm(self.folder)

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray:
        from pipeline.models.bilstm import predict_logits

        return predict_logits(self.model, self.tokenizer, texts, pairs, batch_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_predictor(name: str, folder: str | Path, max_length: int = 128) -> Predictor:
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder}: no model here (config.json missing); run `dvc repro` first")
    arch = json.loads(config_file.read_text(encoding="utf-8")).get("arch")
    if arch == "bilstm":
        return BiLSTMPredictor(name, folder)
    return HFPredictor(name, folder, max_length)


def weights_size(p: Predictor) -> int:
    """Bytes of what a runtime loads as weights: the ONNX graph, or the PyTorch safetensors file(s)."""
    onnx_path = getattr(p, "path", None)
    if onnx_path is not None:
        return Path(onnx_path).stat().st_size
    return sum(f.stat().st_size for f in Path(p.folder).glob("*.safetensors"))


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


RUNTIME_SEP = ":"  # row names: "tinybert4" (PyTorch), "tinybert4:onnx", "tinybert4:int8"


def row_name(model: str, runtime: str) -> str:
    return model if runtime == "torch" else f"{model}{RUNTIME_SEP}{runtime}"


def split_row_name(name: str) -> tuple[str, str]:
    model, _, runtime = name.partition(RUNTIME_SEP)
    return model, runtime or "torch"


def evaluate_models(task: Task, predictors: Sequence[Predictor], splits: dict[str, Any],
                    cfg: EvaluateConfig) -> dict[str, Any]:
    """Quality on every labelled split, size, speed and retention (vs the reference) per predictor.

    The first predictor is the reference (the teacher in PyTorch). Predictor names follow row_name():
    the model, then the runtime after a colon for ONNX fp32 / int8."""
    dev_texts, dev_pairs = texts_of(splits["dev"], task.is_pair)
    results: dict[str, dict[str, Any]] = {}
    for p in tqdm(predictors, desc="quality", unit="model"):
        model, runtime = split_row_name(p.name)
        row: dict[str, Any] = {"model": model, "runtime": runtime}
        for split_name, split in splits.items():
            labels = np.asarray(split["label"])
            if not (labels >= 0).any():
                continue
            logits = p.logits(*texts_of(split, task.is_pair), 128)
            for metric, value in compute_metrics(task, logits, labels).items():
                row[f"{split_name}_{metric}"] = round(value, 4)
        row["parameters"] = p.num_parameters()
        row["size_mb"] = round(weights_size(p) / 2**20, 2)
        results[p.name] = row
    for row in results.values():  # a runtime runs the same network: count its parameters once
        if row["runtime"] != "torch" and row["model"] in results:
            row["parameters"] = results[row["model"]]["parameters"]
    speed = measure_speed(predictors, dev_texts, dev_pairs, cfg)
    reference = predictors[0].name
    main = f"dev_{task.main_metric}"
    thr_key = f"throughput_b{cfg.batch_size}"
    for name, row in results.items():
        row.update(speed[name])
        row["retention"] = round(row[main] / results[reference][main], 4) if results[reference][main] else None
        row["speedup_b1"] = round(speed[reference]["latency_ms_b1"] / speed[name]["latency_ms_b1"], 2)
        row["speedup_throughput"] = round(speed[name][thr_key] / speed[reference][thr_key], 2)
        row["compression"] = round(results[reference]["parameters"] / row["parameters"], 2)
    return {"task": task.name, "main_metric": main, "reference": reference, "threads": cfg.threads,
            "torch_threads": torch.get_num_threads(), "models": results}


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
