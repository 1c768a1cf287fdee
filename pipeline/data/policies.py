"""Row policies: what happens to an empty, over-long or duplicated row (params `data.*`), and label
checks. Every record passes through `normalise`, whichever file format it came from; a bad row raises
DataError naming its file and line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from pipeline.config import DataConfig
from pipeline.errors import DataError
from pipeline.tasks import Task

Rows = dict[str, list]
Columns = tuple[str, str | None, str]  # raw names of (text, text_pair, label)


def normalise(records: Iterator[tuple[int, dict[str, Any]]], path: str, task: Task, cfg: DataConfig,
              cols: Columns, labelled: bool, counts: Counter) -> Rows:
    """Validate (line, record) pairs into rows {text, text_pair, label}, applying the data.* policies
    (what they drop or change is counted in `counts`)."""
    text_col, pair_col, label_col = cols
    rows: Rows = {"text": [], "text_pair": [], "label": []}
    first_line: dict[tuple[str, str | None], int] = {}
    for line, rec in records:
        where = f"{path}:{line}"
        fields = [clean_text(rec.get(text_col), text_col, where, cfg, counts)]
        if pair_col is not None:
            fields.append(clean_text(rec.get(pair_col), pair_col, where, cfg, counts))
        if None in fields:  # dropped by a policy
            continue
        label = -1
        if labelled:
            raw = rec.get(label_col)
            label = task.label_id(raw) if raw is not None else None
            if label is None:
                allowed = ", ".join(task.raw_labels + task.labels)
                raise DataError(f"{where}: label {raw!r} is not one of the {task.name} labels ({allowed})")
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
    if not rows["text"]:
        raise DataError(f"{path}: no data rows" + (" left after the data.* policies" if counts else ""))
    return rows


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
