"""Task registry: what a task's raw data looks like, its labels and its metric.

A new task is one entry in TASKS. Raw label values are the strings written in the data files;
label ids are their positions in `labels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str
    labels: tuple[str, ...]
    text_column: str
    label_column: str
    pair_column: str | None = None
    raw_labels: tuple[str, ...] = ("0", "1")
    metrics: tuple[str, ...] = ("accuracy",)
    hub_columns: tuple[str, str | None, str] = ("sentence", None, "label")

    @property
    def is_pair(self) -> bool:
        return self.pair_column is not None

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def label_id(self, raw: object) -> int | None:
        """The label id of a raw value (its raw string, its name, or its id); None if unknown."""
        text = str(raw).strip()
        if text in self.raw_labels:
            return self.raw_labels.index(text)
        if text in self.labels:
            return self.labels.index(text)
        return None


TASKS: dict[str, Task] = {
    "sst2": Task(
        name="sst2",
        labels=("negative", "positive"),
        text_column="sentence",
        label_column="label",
        hub_columns=("sentence", None, "label"),
    ),
    "mrpc": Task(
        name="mrpc",
        labels=("not_equivalent", "equivalent"),
        text_column="#1 String",
        pair_column="#2 String",
        label_column="Quality",
        metrics=("f1", "accuracy"),
        hub_columns=("sentence1", "sentence2", "label"),
    ),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}") from None


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold)) if len(gold) else float("nan")


def f1(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    tp = float(np.sum((pred == positive) & (gold == positive)))
    fp = float(np.sum((pred == positive) & (gold != positive)))
    fn = float(np.sum((pred != positive) & (gold == positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred == 0) & (gold == 0)))
    fp = float(np.sum((pred == 1) & (gold == 0)))
    fn = float(np.sum((pred == 0) & (gold == 1)))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom else 0.0


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc}


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics over labelled rows (label >= 0)."""
    keep = labels >= 0
    pred = np.asarray(logits)[keep].argmax(-1)
    gold = np.asarray(labels)[keep]
    return {name: METRICS[name](pred, gold) for name in task.metrics}
