"""Tasks: what a task's raw data looks like, its labels (or a score), and how it is measured.

A task is declared in params (`data.*`): a GLUE preset by name, or a task of your own, with its
columns, labels (or read from train), problem type and metrics. The prepare stage resolves it against
the data and records it in the prepared artifact's meta.json (labels in id order included); every later
stage reads it from there (`prepared_task()`), so the label order is fixed once.

Labels: for classification, ids 0..n-1 index `labels` (raw values in the files map to them through
`raw_labels`; -1 marks an unlabelled row). For regression the label is a float score (NaN: unlabelled)
and the model has one output.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import PREPARED
from pipeline.errors import DataError

CLASSIFICATION, REGRESSION = "classification", "regression"
UNLABELLED = -1


@dataclass(frozen=True)
class Preset:
    """A GLUE task: its official files, columns and metrics."""

    text: str
    label: str
    pair: str | None = None
    labels: tuple[str, ...] = ("0", "1")  # label names by id
    raw_labels: tuple[str, ...] | None = None  # what the files write for them (default: the names)
    problem: str = CLASSIFICATION
    metrics: tuple[str, ...] = ("accuracy",)
    headerless: tuple[str, ...] | None = None  # column names of files without a header line (CoLA)
    dev: tuple[str, ...] = ("dev",)  # file name(s) of the dev split
    extra: dict[str, str] = field(default_factory=dict)  # more labelled splits: split name -> file name
    hub: tuple[str, str | None, str] | None = None  # the `glue` Hub dataset's column names


GLUE: dict[str, Preset] = {
    "cola": Preset("sentence", "label", labels=("unacceptable", "acceptable"), raw_labels=("0", "1"),
                   metrics=("mcc", "accuracy"), headerless=("source", "label", "original_label", "sentence"),
                   hub=("sentence", None, "label")),
    "sst2": Preset("sentence", "label", labels=("negative", "positive"), raw_labels=("0", "1"),
                   hub=("sentence", None, "label")),
    "mrpc": Preset("#1 String", "Quality", pair="#2 String", labels=("not_equivalent", "equivalent"),
                   raw_labels=("0", "1"), metrics=("f1", "accuracy"), hub=("sentence1", "sentence2", "label")),
    "stsb": Preset("sentence1", "score", pair="sentence2", labels=(), problem=REGRESSION,
                   metrics=("pearson", "spearman"), hub=("sentence1", "sentence2", "label")),
    "qqp": Preset("question1", "is_duplicate", pair="question2", labels=("not_duplicate", "duplicate"),
                  raw_labels=("0", "1"), metrics=("f1", "accuracy"), hub=("question1", "question2", "label")),
    "mnli": Preset("sentence1", "gold_label", pair="sentence2", labels=("entailment", "neutral", "contradiction"),
                   dev=("dev_matched",), extra={"dev_mismatched": "dev_mismatched"},
                   hub=("premise", "hypothesis", "label")),
    "qnli": Preset("question", "label", pair="sentence", labels=("entailment", "not_entailment"),
                   hub=("question", "sentence", "label")),
    "rte": Preset("sentence1", "label", pair="sentence2", labels=("entailment", "not_entailment"),
                  hub=("sentence1", "sentence2", "label")),
    "wnli": Preset("sentence1", "label", pair="sentence2", labels=("not_entailment", "entailment"),
                   raw_labels=("0", "1"), hub=("sentence1", "sentence2", "label")),
}


@dataclass(frozen=True)
class Task:
    name: str
    problem: str
    labels: tuple[str, ...]  # classification: names by id; regression: ("score",)
    metrics: tuple[str, ...]  # the first is the main one
    is_pair: bool
    raw_labels: tuple[str, ...] = ()  # classification: what the files write, by id

    @property
    def regression(self) -> bool:
        return self.problem == REGRESSION

    @property
    def unlabelled(self) -> int | float:
        """The label of a row without one."""
        return float("nan") if self.regression else UNLABELLED

    def labelled(self, labels: np.ndarray) -> np.ndarray:
        """Which of these labels are there (not the unlabelled marker)."""
        labels = np.asarray(labels, dtype=float)
        return ~np.isnan(labels) if self.regression else labels >= 0

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.labels)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def label_id(self, raw: object) -> int | float | None:
        """The label of a raw value: a class id (from its raw string, its name or its id), or a float
        score for regression; None if it is not one."""
        text = str(raw).strip()
        if self.regression:
            try:
                value = float(text)
            except ValueError:
                return None
            return value if math.isfinite(value) else None
        for values in (self.raw_labels, self.labels):
            if text in values:
                return values.index(text)
        if text.isdigit() and int(text) < len(self.labels):  # an id (what Hub datasets hold)
            return int(text)
        return None

    def model_labels(self) -> dict[str, Any]:
        """What a Hugging Face classifier's config says about the labels."""
        return dict(num_labels=self.num_labels, id2label=dict(enumerate(self.labels)),
                    label2id={name: i for i, name in enumerate(self.labels)},
                    problem_type="regression" if self.regression else "single_label_classification")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def preset_task(name: str) -> Task:
    """A GLUE preset as a Task (what prepare resolves for it when data.* changes nothing)."""
    p = GLUE[name]
    labels = ("score",) if p.problem == REGRESSION else p.labels
    return Task(name, p.problem, labels, p.metrics, p.pair is not None,
                () if p.problem == REGRESSION else (p.raw_labels or p.labels))


def prepared_task(prepared: str | Path | None = None) -> Task:
    """The task as the prepare stage resolved it (data/prepared/meta.json)."""
    meta = Path(prepared or PREPARED) / "meta.json"
    if not meta.is_file():
        raise DataError(f"{meta}: not found (run the prepare stage: dvc repro prepare)")
    return Task.from_json(json.loads(meta.read_text(encoding="utf-8"))["task"])


# ---------------------------------------------------------------- metrics
def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold)) if len(gold) else float("nan")


def f1(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of the class with id 1 (GLUE's F1 for MRPC and QQP)."""
    tp = float(np.sum((pred == positive) & (gold == positive)))
    fp = float(np.sum((pred == positive) & (gold != positive)))
    fn = float(np.sum((pred != positive) & (gold == positive)))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def f1_macro(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 averaged over the classes present in gold or predictions, each class as the positive one."""
    classes = np.union1d(np.unique(gold), np.unique(pred))
    return float(np.mean([f1(pred, gold, int(c)) for c in classes])) if len(classes) else 0.0


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation, multi-class (Gorodkin 2004); the binary MCC for two classes."""
    classes = np.union1d(np.unique(gold), np.unique(pred))
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)))
    for g, p in zip(gold, pred):
        confusion[index[g], index[p]] += 1
    n, correct = confusion.sum(), np.trace(confusion)
    true, predicted = confusion.sum(1), confusion.sum(0)
    denom = np.sqrt((n * n - predicted @ predicted) * (n * n - true @ true))
    return float((correct * n - predicted @ true) / denom) if denom else 0.0


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    if len(gold) < 2 or np.std(pred) == 0 or np.std(gold) == 0:
        return 0.0
    return float(np.corrcoef(pred, gold)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse = np.unique(x, return_inverse=True)
    return np.bincount(inverse, weights=ranks)[inverse] / np.bincount(inverse)[inverse]


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return pearson(_ranks(pred), _ranks(gold))


CLASSIFICATION_METRICS = {"accuracy": accuracy, "f1": f1, "f1_macro": f1_macro, "mcc": mcc}
REGRESSION_METRICS = {"pearson": pearson, "spearman": spearman}
METRICS = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}


IMBALANCE = 2.0  # classes are imbalanced when the most frequent has this many times the rows of the rarest


def imbalanced(task: Task, labels) -> bool:
    """Whether a classification task's labelled rows are imbalanced enough for a per-class view (SST-2's
    56/44 is not; MRPC's 68/32 is)."""
    if task.regression:
        return False
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels >= 0].astype(int), minlength=task.num_labels)
    return bool(counts.min() == 0 or counts.max() / counts.min() >= IMBALANCE)


def recall_by_class(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Recall of each class over the labelled rows: how many of its rows the model finds (a rare class a
    model never predicts has 0)."""
    labels = np.asarray(labels)
    keep = labels >= 0
    pred, gold = np.asarray(logits)[keep].argmax(-1), labels[keep]
    return {name: float(np.mean(pred[gold == i] == i)) if np.any(gold == i) else float("nan")
            for i, name in enumerate(task.labels)}


def baseline(task: Task, train_labels, dev_labels) -> dict[str, Any]:
    """The model that learns nothing but train's labels: the majority class (classification) or the mean
    score (regression), predicted for every dev row; its metrics on dev, and what it predicts."""
    train, dev = np.asarray(train_labels, dtype=float), np.asarray(dev_labels, dtype=float)
    seen = train[task.labelled(train)]
    if task.regression:
        guess, predicts = float(seen.mean()), round(float(seen.mean()), 4)
        logits = np.full((len(dev), 1), guess)
    else:
        guess = int(np.bincount(seen.astype(int), minlength=task.num_labels).argmax())
        predicts = task.labels[guess]
        logits = np.zeros((len(dev), task.num_labels))
        logits[:, guess] = 1.0
    scores = compute_metrics(task, logits, dev if task.regression else dev.astype(int))
    return {"predicts": predicts, **{f"dev_{m}": round(v, 4) for m, v in scores.items()}}


def compute_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics over the labelled rows (classification: label >= 0; regression: not NaN)."""
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=float if task.regression else None)
    keep = task.labelled(labels)
    pred = logits[keep][:, 0] if task.regression else logits[keep].argmax(-1)
    return {name: METRICS[name](pred, labels[keep]) for name in task.metrics}
