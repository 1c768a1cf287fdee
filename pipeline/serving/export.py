"""Export a trained classifier as a self-contained folder that serves without this pipeline's training
code (stage `export`: every model of the run into exports/<name>/):

- the model in its own format: Hugging Face `save_pretrained` (teacher, Transformer students) or the
  BiLSTM student folder of pipeline.models.bilstm, with the task's label names in its config;
- `model.onnx`: fp32, dynamic batch and sequence axes, the same inputs the PyTorch predictors feed; with
  `fuse_graph` (the default), a Transformer's graph rewritten with onnxruntime's fused operators (pipeline.serving.graphs);
- `model.int8.onnx`: int8 quantisation of model.onnx (dynamic by default, or static calibrated on train
  rows), served only if it stays within `int8_max_drop` points of fp32 on dev (`int8_gate`);
- `README.md` (model card, pipeline.serving.card) and `export.json` (files, sizes, parity, quality per runtime).

The ONNX graph is kept only if onnxruntime reproduces the PyTorch logits on real dev sentences, batched
so that padding varies within a batch; the folder appears only when every step succeeded.

Exporter: torch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). In torch 2.13 it is
deprecated but present, needs no extra package and exports these models in well under a second. The
torch.export-based exporter needs the `onnxscript` package, takes seconds even for a tiny BERT, and, like
the TorchScript one, cannot export `pack_padded_sequence`: BiLSTMs are therefore exported through a
padding-aware twin (`PaddedBiLSTM` in pipeline.serving.kinds, no packed sequences) whose logits the parity
check compares with the original model's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import atomic_path, remove_path, texts_of
from pipeline.errors import DataError, ModelError
from pipeline.serving.card import render_card
from pipeline.serving.graphs import EXPORTER, OPSET, fuse, write_int8, write_onnx
from pipeline.serving.kinds import Exportable, kind_of
from pipeline.serving.runtimes import (CARD_FILE, INT8_FILE, ONNX_FILE, RUNTIMES, SUMMARY_FILE, load_export,
                                       onnx_session, read_config, run_session)
from pipeline.tasks import GLUE, Task, compute_metrics, imbalanced, preset_task, recall_by_class

PARITY_BATCH = 16
CALIBRATION_BATCH = 32
QUALITY_BATCH = 128

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- export steps
def compare_runtimes(exportable: Exportable, folder: Path, texts: Sequence[str], pairs: Sequence[str] | None,
                     ) -> dict[str, np.ndarray]:
    """Logits of PyTorch, ONNX fp32 and ONNX int8 on the same input-order (mixed-length) batches."""
    fp32, int8 = onnx_session(folder / ONNX_FILE), onnx_session(folder / INT8_FILE)
    out: dict[str, list[np.ndarray]] = {"torch": [], "onnx": [], "int8": []}
    for _, feeds in exportable.batches(texts, pairs, PARITY_BATCH):
        out["torch"].append(exportable.reference(feeds))
        out["onnx"].append(run_session(fp32, feeds))
        out["int8"].append(run_session(int8, feeds))
    return {k: np.concatenate(v) for k, v in out.items()}


def parity_summary(logits: dict[str, np.ndarray], onnx_path: Path, tolerance: float) -> dict[str, Any]:
    """Max |logit difference| of fp32 vs PyTorch (must be <= tolerance) and of int8 vs fp32."""
    fp32_diff = float(np.abs(logits["onnx"] - logits["torch"]).max())
    if not fp32_diff <= tolerance:  # also catches NaN
        raise ModelError(f"{onnx_path}: ONNX logits differ from PyTorch by up to {fp32_diff:.3g} on "
                         f"{len(logits['torch'])} dev examples (tolerance {tolerance:g})")
    int8 = {"max_abs_diff_vs_fp32": float(np.abs(logits["int8"] - logits["onnx"]).max())}
    if logits["onnx"].shape[-1] > 1:  # a classifier: how often int8 decides as fp32 does
        int8["argmax_agreement_vs_fp32"] = round(float(np.mean(logits["int8"].argmax(-1) == logits["onnx"].argmax(-1))), 4)
    return {"onnx": {"max_abs_diff": fp32_diff, "tolerance": tolerance}, "int8": int8}


def _resolve_task(task: Task | str) -> Task:
    if isinstance(task, Task):
        return task
    if task not in GLUE:
        raise ModelError(f"task: {task!r} is not a GLUE preset ({', '.join(GLUE)}); give a Task")
    return preset_task(task)


def _parity_inputs(task: Task, dev_texts: Sequence[str], dev_pairs: Sequence[str] | None,
                   n: int) -> tuple[list[str], list[str] | None]:
    texts = list(dev_texts[:n])
    if not texts:
        raise DataError("dev_texts: no sentences for the ONNX parity check")
    if not task.is_pair:
        return texts, None
    if dev_pairs is None or len(dev_pairs) < len(texts):
        raise DataError(f"dev_pairs: task {task.name} is a pair task: give the second text of every dev example")
    return texts, list(dev_pairs[:n])



def quality(predictor, task: Task, splits: dict[str, Any], per_class: bool = False) -> dict[str, float]:
    """A predictor's task metrics on each split that has labels ({"dev_accuracy": ..., ...}); with
    `per_class`, each class's recall too ({"dev_recall_<label>": ...})."""
    row: dict[str, float] = {}
    for split_name, split in splits.items():
        labels = np.asarray(split["label"])
        if not task.labelled(labels).any():
            continue
        logits = predictor.logits(*texts_of(split, task.is_pair), QUALITY_BATCH)
        row.update({f"{split_name}_{metric}": round(value, 4)
                    for metric, value in compute_metrics(task, logits, labels).items()})
        if per_class:
            row.update({f"{split_name}_recall_{label}": round(value, 4)
                        for label, value in recall_by_class(task, logits, labels).items()})
    return row


def export_model(model_folder: str | Path, out_dir: str | Path, *, name: str, task: Task | str,
                 dev_texts: Sequence[str], dev_pairs: Sequence[str] | None, card_info: dict[str, Any],
                 splits: dict[str, Any] | None = None, tolerance: float = 1e-4, parity_examples: int = 64,
                 max_length: int = 128, order: int = 0, histories: dict[str, str] | None = None,
                 fuse_graph: bool = True, int8_max_drop: float | None = None, int8_failure: str = "drop",
                 int8_calibration: tuple[Sequence[str], Sequence[str] | None] | None = None,
                 int8_reduce_range: bool = True, per_class: bool = False) -> dict[str, Any]:
    """Export a teacher/student folder to `out_dir` (see the module docstring); returns the summary
    also written to out_dir/export.json, with the quality of every runtime on `splits` (name -> prepared
    split). Raises ModelError if the ONNX graph's logits differ from PyTorch's by more than `tolerance`
    on the first `parity_examples` dev examples, leaving no out_dir. int8 is static, calibrated on
    `int8_calibration` (texts, pairs), when that is given; dynamic otherwise; its weights in 7 bits with
    `int8_reduce_range`. With `per_class`, quality includes each class's recall."""
    source, out_dir, task = Path(model_folder), Path(out_dir), _resolve_task(task)
    kind = kind_of(read_config(source))
    texts, pairs = _parity_inputs(task, dev_texts, dev_pairs, parity_examples)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        exportable = kind.prepare_export(source, tmp, task, max_length)
        write_onnx(exportable.traced, exportable.sample(task), exportable.input_names, exportable.dynamic_axes,
                   tmp / ONNX_FILE)
        fused = fuse(tmp / ONNX_FILE, *exportable.fusion) if fuse_graph and exportable.fusion else {}
        calibration = None if int8_calibration is None else [
            feeds for _, feeds in exportable.batches(*int8_calibration, CALIBRATION_BATCH)]
        write_int8(tmp / ONNX_FILE, tmp / INT8_FILE, calibration, int8_reduce_range)
        parity = parity_summary(compare_runtimes(exportable, tmp, texts, pairs), out_dir / ONNX_FILE, tolerance)
        summary: dict[str, Any] = {
            "name": name, "order": order, "task": task.to_json(), "labels": list(task.labels), "is_pair": task.is_pair,
            "kind": kind.name, "source": str(source), "parameters": exportable.parameters, "max_length": max_length,
            "exporter": EXPORTER, "opset": OPSET, "onnx_inputs": exportable.input_names, "fused_operators": fused,
            "parity_examples": len(texts), **parity, "folder": str(out_dir), "card_info": card_info,
            "histories": histories or {},
        }
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, default=str) + "\n", encoding="utf-8")  # read by the predictors
        summary["quality"] = {runtime: quality(load_export(tmp, runtime, name=name), task, splits or {}, per_class)
                              for runtime in RUNTIMES}
        summary["int8"]["method"] = "dynamic" if int8_calibration is None else "static"
        summary["int8"]["reduce_range"] = int8_reduce_range
        summary["int8"].update(int8_gate(summary["quality"], task, tmp, name, int8_max_drop, int8_failure))
        (tmp / CARD_FILE).write_text(render_card(summary, card_info, _file_sizes(tmp)), encoding="utf-8")
        summary["files"] = _file_sizes(tmp)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def int8_gate(measured: dict[str, dict[str, float]], task: Task, folder: Path, name: str, max_drop: float | None,
              failure: str) -> dict[str, Any]:
    """Whether int8 is served: its main dev metric may fall at most `max_drop` points below ONNX fp32's.
    Over the limit, the export fails (`failure: fail`) or leaves int8 out, saying why (`failure: drop`)."""
    main = f"dev_{task.main_metric}"
    if max_drop is None or main not in measured["onnx"]:
        return {"served": True}
    drop = round(100 * (measured["onnx"][main] - measured["int8"][main]), 2)
    if drop <= max_drop:
        return {"served": True, "points_lost": drop}
    why = (f"{name}: int8 loses {drop:.2f} points of {main} against ONNX fp32 ({100 * measured['onnx'][main]:.2f} -> "
           f"{100 * measured['int8'][main]:.2f}), over export.int8_max_drop ({max_drop:g})")
    if failure == "fail":
        raise ModelError(f"{why}; set export.int8_failure: drop to export without int8, or raise the limit")
    (folder / INT8_FILE).unlink()
    log.warning("%s: int8 left out of the served runtimes", why)
    return {"served": False, "points_lost": drop, "left_out": why}


def _file_sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (SUMMARY_FILE, CARD_FILE)}


def quality_splits(prepared, wanted: list[str]) -> dict[str, Any]:
    """The prepared splits quality is measured on: those in `wanted` that exist, and dev always (retention
    and the Pareto front are read on dev). Unlabelled splits are skipped by measure_quality."""
    return {name: prepared[name] for name in prepared if name in wanted or name == "dev"}


def export_all(models: dict[str, tuple[Path, dict[str, Any], dict[str, str]]], task: Task, prepared,
               cfg, max_length: int, exports: Path) -> dict[str, dict[str, Any]]:
    """Export each model (name -> (folder, card info, training histories)) to exports/<name>; on any
    failure remove every export (no partial set)."""
    texts, pairs = texts_of(prepared["dev"], task.is_pair)
    measured = quality_splits(prepared, cfg.splits)
    # a rare class that a model ignores shows in its recall, not in its accuracy
    per_class = "train" in prepared and imbalanced(task, prepared["train"]["label"])
    calibration = None
    if cfg.int8_method == "static":
        train = prepared["train"]
        calibration = texts_of(train.select(range(min(cfg.int8_calibration_rows, len(train)))), task.is_pair)
    summaries = {}
    try:
        for order, (name, (folder, card_info, histories)) in enumerate(models.items()):
            log.info("exporting %s", name)
            summaries[name] = export_model(folder, exports / name, name=name, task=task, dev_texts=texts,
                                           dev_pairs=pairs, card_info=card_info, splits=measured,
                                           max_length=max_length, order=order, histories=histories,
                                           fuse_graph=cfg.fuse_graph, int8_max_drop=cfg.int8_max_drop,
                                           int8_failure=cfg.int8_failure, int8_calibration=calibration,
                                           int8_reduce_range=cfg.int8_reduce_range, per_class=per_class)
    except BaseException:
        remove_path(exports)
        raise
    return summaries
