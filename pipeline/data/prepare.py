"""The prepare stage's work: raw splits in, a validated and subsampled `datasets` DatasetDict out.

Every task is normalised to the columns `text`, `text_pair` (null for single-sentence tasks) and
`label` (an id into the task's labels; -1 where a split has no labels, like GLUE test files).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pipeline.config import DataConfig
from pipeline.data.policies import Rows
from pipeline.data.readers import read_raw
from pipeline.tasks import get_task


def subsample(rows: Rows, limit: int | None, seed: int) -> Rows:
    n = len(rows["text"])
    if limit is None or limit >= n:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))
    return {col: [values[i] for i in keep] for col, values in rows.items()}


def build_dataset_dict(splits: dict[str, Rows]):
    import datasets

    features = datasets.Features({
        "text": datasets.Value("string"),
        "text_pair": datasets.Value("string"),
        "label": datasets.Value("int64"),
    })
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict(rows, features=features) for name, rows in splits.items()
    })


def prepare(cfg: DataConfig, seed: int) -> tuple[Any, dict]:
    """Read, validate and subsample raw data; return (DatasetDict, summary)."""
    task = get_task(cfg.task)
    counts: dict[str, Counter] = {}
    splits = read_raw(cfg, counts)
    splits["train"] = subsample(splits["train"], cfg.max_train, seed)
    splits["dev"] = subsample(splits["dev"], cfg.max_dev, seed)
    summary = {
        "task": task.name,
        "labels": list(task.labels),
        "is_pair": task.is_pair,
        "source": cfg.source,
        "rows": {name: len(rows["text"]) for name, rows in splits.items()},
        "policies": {name: dict(sorted(c.items())) for name, c in counts.items()},
        "label_counts": {
            name: {task.labels[k]: int(v) for k, v in zip(*np.unique([x for x in rows["label"] if x >= 0],
                                                                        return_counts=True))}
            for name, rows in splits.items()
        },
    }
    return build_dataset_dict(splits), summary
