"""The prepare stage's work: raw splits in, the task resolved, a validated and subsampled `datasets`
DatasetDict out, the task recorded in its meta.json.

Every task is normalised to the columns `text`, `text_pair` (null for single-sentence tasks) and
`label` (a class id, -1 where a split has no labels like GLUE test files; or a float score, NaN where
there is none).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pipeline.artifacts import UNLABELLED
from pipeline.data.policies import Rows, label_ids
from pipeline.data.readers import columns, read_raw, read_unlabelled
from pipeline.errors import DataError
from pipeline.params.config import DataConfig
from pipeline.tasks import GLUE, REGRESSION, Task
from pipeline.text import normalised


def subsample(rows: Rows, limit: int | None, seed: int) -> Rows:
    n = len(rows["text"])
    if limit is None or limit >= n:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return {col: [values[i] for i in keep] for col, values in rows.items()}


def build_dataset_dict(splits: dict[str, Rows], task: Task):
    import datasets

    features = datasets.Features({
        "text": datasets.Value("string"),
        "text_pair": datasets.Value("string"),
        "label": datasets.Value("float32" if task.regression else "int64"),
    })
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict(rows, features=features) for name, rows in splits.items()
    })


def _sorted_values(values: set[str]) -> list[str]:
    """Label values in a stable order: numerically when they are all integers, else as text."""
    return sorted(values, key=int) if all(v.lstrip("-").isdigit() for v in values) else sorted(values)


def resolve_task(cfg: DataConfig, train: Rows) -> Task:
    """The task data.* declares (over its GLUE preset), with its labels read from train when neither
    params nor the preset give them."""
    problem, labels, metrics = cfg.resolved()
    raw: tuple[str, ...] = ()
    if problem == REGRESSION:
        labels = ("score",)
    elif labels is not None:
        preset = GLUE.get(cfg.task)
        raw = tuple(cfg.labels) if cfg.labels else (preset.raw_labels or preset.labels)
    else:
        values = {v for v in train["label"] if v is not None}
        where = train["where"][0].rsplit(":", 1)[0]
        if len(values) < 2:
            raise DataError(f"{where}: the label column holds {len(values)} distinct value(s) {sorted(values)}; a "
                            "classification task needs two or more (or set data.problem: regression)")
        labels = raw = tuple(_sorted_values(values))
        if "f1" in metrics and len(labels) != 2:
            raise DataError(f"{where}: {len(labels)} labels {list(labels)}, but data.metrics has f1, which is binary; "
                            "use f1_macro")
    return Task(name=cfg.task, problem=problem, labels=tuple(labels), metrics=metrics,
                is_pair=columns(cfg)[1] is not None, raw_labels=raw)


def prepare(cfg: DataConfig, seed: int) -> tuple[Any, dict]:
    """Read, validate and subsample raw data; return (DatasetDict, summary with the resolved task). The
    texts of data.unlabelled, if any, become the `unlabelled` split (no labels)."""
    counts: dict[str, Counter] = {}
    raw = read_raw(cfg, counts)
    extra = read_unlabelled(cfg, counts.setdefault(UNLABELLED, Counter()))
    if not counts[UNLABELLED]:
        del counts[UNLABELLED]
    task = resolve_task(cfg, raw["train"])
    splits = {name: label_ids(rows, task) for name, rows in raw.items()}
    held_out = {name: rows for name, rows in splits.items() if name != "train"}  # every row, before max_dev
    splits["train"] = subsample(splits["train"], cfg.max_train, seed)
    splits["dev"] = subsample(splits["dev"], cfg.max_dev, seed)
    unlabelled = None
    if extra is not None:
        splits[UNLABELLED], unlabelled = transfer_rows(label_ids(extra, task), splits["train"], held_out,
                                                       cfg.max_unlabelled, seed)
        if not splits[UNLABELLED]["text"]:
            del splits[UNLABELLED]
    summary = {
        "task": task.to_json(),
        "source": cfg.source,
        "rows": {name: len(rows["text"]) for name, rows in splits.items()},
        "policies": {name: dict(sorted(c.items())) for name, c in counts.items()},
        "label_counts": {name: label_counts(task, rows["label"]) for name, rows in splits.items()
                         if name != UNLABELLED},
        **({UNLABELLED: {"source": cfg.unlabelled, **unlabelled}} if unlabelled is not None else {}),
    }
    return build_dataset_dict(splits, task), summary


def transfer_rows(rows: Rows, train: Rows, held_out: dict[str, Rows], limit: int | None,
                  seed: int) -> tuple[Rows, dict[str, int]]:
    """Unlabelled rows fit to learn from: without those that are also in dev or test (or another held-out
    split: they would leak), in the labelled train rows (they add nothing) or earlier in the file, compared
    in normalised form (case, spacing and punctuation aside; both texts of a pair); then a seeded sample of
    `limit`. Returns the rows and what was removed."""
    def keys(split: Rows) -> set[tuple[str, str]]:
        return {(normalised(t), normalised(p)) for t, p in zip(split["text"], split["text_pair"])}

    leaked, labelled, seen = set().union(*map(keys, held_out.values())), keys(train), set()
    removed = Counter()
    keep = []
    for i, key in enumerate(zip(map(normalised, rows["text"]), map(normalised, rows["text_pair"]))):
        why = "in_dev_or_test" if key in leaked else "in_train" if key in labelled else "repeated" if key in seen \
            else None
        seen.add(key)
        if why:
            removed[why] += 1
        else:
            keep.append(i)
    kept = {col: [values[i] for i in keep] for col, values in rows.items()}
    sampled = subsample(kept, limit, seed)
    return sampled, {"read": len(rows["text"]), **{k: removed[k] for k in ("in_dev_or_test", "in_train", "repeated")},
                     "kept": len(kept["text"]), "sampled": len(sampled["text"])}


def label_counts(task: Task, labels: list) -> dict[str, Any]:
    """Rows per label (classification), or the scores' count, mean and range (regression)."""
    if task.regression:
        scores = np.asarray(labels, dtype=float)[task.labelled(labels)]
        return {"scored": int(len(scores)), **({"mean": round(float(scores.mean()), 4), "min": float(scores.min()),
                                                 "max": float(scores.max())} if len(scores) else {})}
    ids, n = np.unique([x for x in labels if x >= 0], return_counts=True)
    return {task.labels[int(k)]: int(v) for k, v in zip(ids, n)}
