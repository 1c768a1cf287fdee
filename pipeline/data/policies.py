"""Row policies: what happens to an empty, over-long or duplicated row (params `data.*`), and label
checks. Every record passes through `normalise`, whichever file format it came from; a bad row raises
DataError naming its file and line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from pipeline.errors import DataError
from pipeline.params.config import DataConfig
from pipeline.tasks import UNLABELLED, Task

Rows = dict[str, list]
Columns = tuple[str, str | None, str]  # raw names of (text, text_pair, label)


def normalise(records: Iterator[tuple[int, dict[str, Any]]], path: str, cfg: DataConfig, cols: Columns,
              labelled: bool, counts: Counter) -> Rows:
    """Validate (line, record) pairs into rows {text, text_pair, label, where}, applying the data.*
    policies (what they drop or change is counted in `counts`). Labels stay as written (None where the
    file has none) until the task is known; `where` is each row's file:line."""
    text_col, pair_col, label_col = cols
    rows: Rows = {"text": [], "text_pair": [], "label": [], "where": []}
    first_line: dict[tuple[str, str | None], int] = {}
    for line, rec in records:
        where = f"{path}:{line}"
        fields = [clean_text(rec.get(text_col), text_col, where, cfg, counts)]
        if pair_col is not None:
            fields.append(clean_text(rec.get(pair_col), pair_col, where, cfg, counts))
        if None in fields:  # dropped by a policy
            continue
        label = None
        if labelled:
            raw = rec.get(label_col)
            label = "" if raw is None else str(raw).strip()
            if not label:
                raise DataError(f"{where}: empty label in column {label_col!r}")
        key = (fields[0], fields[1] if pair_col is not None else None)
        if key in first_line:
            if cfg.duplicates == "fail":
                raise DataError(f"{where}: duplicate of line {first_line[key]} (data.duplicates: fail)")
            counts["duplicate_rows"] += 1
            if cfg.duplicates == "drop":
                counts["dropped_duplicate"] += 1
                continue
        else:
            first_line[key] = line
        rows["text"].append(key[0])
        rows["text_pair"].append(key[1])
        rows["label"].append(label)
        rows["where"].append(where)
    if not rows["text"]:
        raise DataError(f"{path}: no data rows" + (" left after the data.* policies" if counts else ""))
    return rows


def label_ids(rows: Rows, task: Task) -> Rows:
    """Rows with each raw label turned into the task's label (a class id, or a float score); unlabelled
    rows get -1 (classification) or NaN (regression). An unknown label or a non-numeric score is an
    error naming its file and line."""
    out = []
    for raw, where in zip(rows["label"], rows["where"]):
        if raw is None:
            out.append(float("nan") if task.regression else UNLABELLED)
            continue
        label = task.label_id(raw)
        if label is None:
            if task.regression:
                raise DataError(f"{where}: label {raw!r} is not a number (a regression task's target)")
            allowed = ", ".join(dict.fromkeys(task.raw_labels + task.labels))
            raise DataError(f"{where}: label {raw!r} is not one of the {task.name} labels ({allowed})")
        out.append(label)
    return {**{k: v for k, v in rows.items() if k != "where"}, "label": out}
def clean_text(value: Any, column: str, where: str, cfg: DataConfig, counts: Counter) -> str | None:
    """Stripped text, or None when a policy drops the row; raises when a policy says fail."""
    text = "" if value is None else str(value).strip()
    if not text:
        if cfg.empty_text == "fail":
            raise DataError(f"{where}: empty text in column {column!r} (data.empty_text: fail)")
        counts["dropped_empty"] += 1
        return None
    if len(text) > cfg.max_chars:
        if cfg.long_text == "fail":
            raise DataError(f"{where}: text in column {column!r} has {len(text)} characters, over "
                            f"data.max_chars={cfg.max_chars} (data.long_text: fail)")
        if cfg.long_text == "drop":
            counts["dropped_long"] += 1
            return None
        counts["truncated_long"] += 1
        text = text[: cfg.max_chars]
    return text
