"""Raw data in, normalised `datasets` artifacts out.

Every task is normalised to the columns `text`, `text_pair` (null for single-sentence tasks) and
`label` (an id into the task's labels; -1 where a split has no labels, like GLUE test files).
Bad rows raise DataError naming the file and line. Artifacts are written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
from collections import Counter
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import DataConfig
from pipeline.errors import DataError
from pipeline.tasks import Task, get_task

SPLITS = ("train", "dev", "test")
REQUIRED_SPLITS = ("train", "dev")
EXTENSIONS = {".tsv": "glue", ".csv": "csv", ".jsonl": "jsonl"}
HUB_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}

Rows = dict[str, list]


# ---------------------------------------------------------------- atomic artifacts
@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `final`, on error it is removed.

    A killed or failing stage leaves the previous artifact (or none), never half of one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"nothing was written to {tmp} for {final}")
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        remove_path(old)
    finally:
        remove_path(tmp)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def save_dataset(dataset, path: str | Path, meta: dict | None = None) -> None:
    """save_to_disk a Dataset/DatasetDict atomically, with an optional meta.json beside it."""
    with atomic_path(path) as tmp:
        dataset.save_to_disk(str(tmp))
        if meta is not None:
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def texts_of(split, is_pair: bool) -> tuple[list[str], list[str] | None]:
    """A split's text columns as lists (text_pair None for single-sentence tasks)."""
    return list(split["text"]), (list(split["text_pair"]) if is_pair else None)


def load_dataset_dir(path: str | Path):
    import datasets

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: artifact not found (run the stage that makes it: dvc repro)")
    # map() would otherwise write cache files into the artifact folder, modifying a DVC output.
    datasets.disable_caching()
    return datasets.load_from_disk(str(path))


# ---------------------------------------------------------------- tokenisation for word-level models
_TOKEN = re.compile(r"'\w+|\w+(?:[-']\w+)*|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """Word tokens with case kept; pre-tokenised text (SST-2) comes back as its own tokens."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    """Lower-cased word tokens, the vocabulary units of word-level students."""
    return split_words(text.lower())


# ---------------------------------------------------------------- raw readers
def _columns(task: Task, cfg: DataConfig, hub: bool = False) -> tuple[str, str | None, str]:
    default = task.hub_columns if hub else (task.text_column, task.pair_column, task.label_column)
    text = cfg.columns.text or default[0]
    pair = (cfg.columns.text_pair or default[1]) if task.is_pair else None
    label = cfg.columns.label or default[2]
    return text, pair, label


def _normalise(records: Iterator[tuple[int, dict[str, Any]]], path: str, task: Task, cfg: DataConfig,
               cols: tuple[str, str | None, str], labelled: bool, counts: Counter) -> Rows:
    """Validate records into normalised rows, applying the data.* policies (counted in `counts`)."""
    text_col, pair_col, label_col = cols
    rows: Rows = {"text": [], "text_pair": [], "label": []}
    first_line: dict[tuple[str, str | None], int] = {}
    for line, rec in records:
        where = f"{path}:{line}"
        fields = [_clean_text(rec.get(text_col), text_col, where, cfg, counts)]
        if pair_col is not None:
            fields.append(_clean_text(rec.get(pair_col), pair_col, where, cfg, counts))
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


def _clean_text(value: Any, column: str, where: str, cfg: DataConfig, counts: Counter) -> str | None:
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


def _check_header(path: Path, header: list[str], cols: tuple[str, str | None, str], split: str) -> bool:
    """Raise if text columns are missing; return whether the label column is present."""
    for col in cols[:2]:
        if col is not None and col not in header:
            raise DataError(f"{path}:1: missing column {col!r} (header has: {', '.join(header)})")
    has_label = cols[2] in header
    if not has_label and split in REQUIRED_SPLITS:
        raise DataError(f"{path}:1: missing label column {cols[2]!r} (header has: {', '.join(header)})")
    return has_label


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line.rstrip("\r\n")


def read_tsv(path: Path, task: Task, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    """GLUE-style TSV: tab-separated, no quoting (quotes are text), optional BOM."""
    lines = _decoded_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file")
    header = first[1].split("\t")
    cols = _columns(task, cfg)
    labelled = _check_header(path, header, cols, split)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in lines:
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                raise DataError(f"{path}:{number}: expected {len(header)} tab-separated fields, got {len(fields)}")
            yield number, dict(zip(header, fields))

    return _normalise(records(), str(path), task, cfg, cols, labelled, counts)


def read_csv(path: Path, task: Task, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    lines = (line for _, line in _decoded_lines(path))
    reader = csv.DictReader(lines)
    if not reader.fieldnames:
        raise DataError(f"{path}: empty file")
    cols = _columns(task, cfg)
    labelled = _check_header(path, list(reader.fieldnames), cols, split)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for rec in reader:
            if None in rec:
                raise DataError(f"{path}:{reader.line_num}: more fields than the header has")
            yield reader.line_num, rec

    return _normalise(records(), str(path), task, cfg, cols, labelled, counts)


def read_jsonl(path: Path, task: Task, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    cols = _columns(task, cfg)
    state = {"labelled": None}

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in _decoded_lines(path):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line")
            if state["labelled"] is None:
                state["labelled"] = _check_header(path, list(rec), cols, split)
            yield number, rec

    it = records()
    first = next(it, None)
    if first is None:
        raise DataError(f"{path}: empty file")

    def chained() -> Iterator[tuple[int, dict[str, Any]]]:
        yield first
        yield from it

    return _normalise(chained(), str(path), task, cfg, cols, bool(state["labelled"]), counts)


READERS = {"glue": read_tsv, "csv": read_csv, "jsonl": read_jsonl}


def _find_split_file(folder: Path, split: str, fmt: str) -> Path | None:
    names = [split] + (["validation"] if split == "dev" else [])
    exts = [ext for ext, kind in EXTENSIONS.items() if fmt in ("auto", kind)]
    for name in names:
        for ext in exts:
            candidate = folder / f"{name}{ext}"
            if candidate.is_file():
                return candidate
    return None


def read_folder(folder: Path, task: Task, cfg: DataConfig, counts: dict[str, Counter]) -> dict[str, Rows]:
    splits: dict[str, Rows] = {}
    for split in SPLITS:
        path = _find_split_file(folder, split, cfg.format)
        if path is None:
            if split in REQUIRED_SPLITS:
                wanted = "|".join(ext for ext, kind in EXTENSIONS.items() if cfg.format in ("auto", kind))
                raise DataError(f"{folder}: no {split} file ({split}.{{{wanted.replace('.', '')}}})")
            continue
        splits[split] = READERS[EXTENSIONS[path.suffix]](path, task, cfg, split, counts.setdefault(split, Counter()))
    return splits


def read_hub(dataset_id: str, task: Task, cfg: DataConfig, counts: dict[str, Counter]) -> dict[str, Rows]:
    """A Hub dataset through `datasets.load_dataset` (needs network access or a local HF cache)."""
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, cfg.hub_config)
    except Exception as exc:  # the datasets library raises many types for "not reachable/not found"
        raise DataError(f"data.source: cannot load Hub dataset {dataset_id!r} ({type(exc).__name__}: {exc})") from None
    cols = _columns(task, cfg, hub=True)
    splits: dict[str, Rows] = {}
    for split, hub_name in HUB_SPLIT_NAMES.items():
        if hub_name not in loaded:
            if split in REQUIRED_SPLITS:
                raise DataError(f"{dataset_id}: no {hub_name!r} split (has: {', '.join(loaded)})")
            continue
        part = loaded[hub_name]
        where = f"{dataset_id}[{hub_name}]"
        _check_header(Path(where), list(part.column_names), cols, split)
        labels = part[cols[2]] if cols[2] in part.column_names else None
        labelled = labels is not None and any(int(v) >= 0 for v in labels if str(v).lstrip("-").isdigit())
        records = ((i + 1, rec) for i, rec in enumerate(part))
        splits[split] = _normalise(records, where, task, cfg, cols, labelled, counts.setdefault(split, Counter()))
    return splits


def read_raw(cfg: DataConfig, counts: dict[str, Counter] | None = None) -> dict[str, Rows]:
    """Every split of the configured source, validated; `counts` (if given) receives, per split,
    how many rows each data.* policy dropped or changed."""
    task = get_task(cfg.task)
    counts = {} if counts is None else counts
    source = Path(cfg.source)
    if cfg.format == "hub" or (cfg.format == "auto" and not source.exists() and _looks_like_hub_id(cfg.source)):
        return read_hub(cfg.source, task, cfg, counts)
    if not source.exists():
        raise DataError(f"{source}: data folder not found (data.source)")
    if source.is_file():
        raise DataError(f"{source}: data.source must be a folder with train/dev files, not a file")
    return read_folder(source, task, cfg, counts)


def _looks_like_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source)) and not source.startswith(".")


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
