"""Raw data readers: a folder of train/dev[/test] files (GLUE-style TSV, CSV, JSON lines; each may be
gzip-compressed, `train.tsv.gz`) or a Hub dataset, each record validated by the row policies. Errors name the file and line."""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.artifacts import UNLABELLED, open_input, plain_suffix
from pipeline.data.policies import Columns, Rows, normalise
from pipeline.errors import DataError
from pipeline.params.config import DEFAULT_UNLABELLED, DataConfig
from pipeline.tasks import GLUE, Preset

REQUIRED_SPLITS = ("train", "dev")
EXTENSIONS = {".tsv": "glue", ".csv": "csv", ".jsonl": "jsonl"}
HUB_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}
OWN_TASK = Preset("text", "label")  # the layout of a task of your own, unless data.columns says otherwise


def preset(cfg: DataConfig) -> Preset:
    return GLUE.get(cfg.task, OWN_TASK)


def columns(cfg: DataConfig, hub: bool = False) -> Columns:
    """Raw (text, text_pair, label) column names: data.columns, else the preset's (or the Hub's)."""
    p = preset(cfg)
    default = p.hub if hub and p.hub else (p.text, p.pair, p.label)
    return (cfg.columns.text or default[0], cfg.columns.text_pair or default[1], cfg.columns.label or default[2])


def _check_header(path: Path, header: list[str], cols: Columns, split: str) -> bool:
    """Raise if text columns are missing; return whether the label column is present."""
    for col in cols[:2]:
        if col is not None and col not in header:
            raise DataError(f"{path}:1: missing column {col!r} (header has: {', '.join(header)})")
    has_label = cols[2] in header and split != UNLABELLED  # an unlabelled file's label column is ignored
    if not has_label and split in REQUIRED_SPLITS:
        raise DataError(f"{path}:1: missing label column {cols[2]!r} (header has: {', '.join(header)})")
    return has_label


def _decoded_lines(path: Path, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, BOM removed; line endings stripped unless `keep_ends` (CSV keeps
    them, so that a quoted field spanning lines keeps its line breaks)."""
    with open_input(path) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line if keep_ends else line.rstrip("\r\n")


def read_tsv(path: Path, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    """GLUE-style TSV: tab-separated, no quoting (quotes are text), optional BOM; a file without a header
    line (CoLA's train and dev) gets the preset's column names."""
    lines = _decoded_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file")
    header = first[1].split("\t")
    cols = columns(cfg)
    headerless = preset(cfg).headerless
    if headerless and cols[0] not in header and len(header) == len(headerless):
        header, lines = list(headerless), itertools.chain([first], lines)
    labelled = _check_header(path, header, cols, split)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in lines:
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                raise DataError(f"{path}:{number}: expected {len(header)} tab-separated fields, got {len(fields)}")
            yield number, dict(zip(header, fields))

    return normalise(records(), str(path), cfg, cols, labelled, counts)


def read_csv(path: Path, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    """CSV with a header line (RFC 4180 quoting: a quoted field may hold commas, doubled quotes and line
    breaks); each record is reported at the line it starts on."""
    lines = _decoded_lines(path, keep_ends=True)
    pulled = [0]  # physical lines the csv reader has consumed so far

    def counted() -> Iterator[str]:
        for number, line in lines:
            pulled[0] = number
            yield line

    reader = csv.reader(counted(), strict=True)

    def record() -> tuple[int, list[str] | None]:
        """(the line the next record starts on, its fields; None at the end)."""
        first = pulled[0] + 1
        try:
            fields = next(reader, None)
        except csv.Error as exc:
            raise DataError(f"{path}:{first}: malformed CSV ({exc}){spanning(first)}") from None
        return first, fields

    def spanning(first: int) -> str:
        return f" (a quoted field runs from here to line {pulled[0]}: an unclosed quote?)" if pulled[0] > first else ""

    header = record()[1]
    if not header:
        raise DataError(f"{path}: empty file")
    cols = columns(cfg)
    labelled = _check_header(path, header, cols, split)

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        while True:
            first, fields = record()
            if fields is None:
                return
            if not fields or (len(fields) == 1 and not fields[0].strip()):  # a blank line
                continue
            if len(fields) != len(header):
                raise DataError(f"{path}:{first}: expected {len(header)} comma-separated fields, got {len(fields)}"
                                f"{spanning(first)}")
            yield first, dict(zip(header, fields))

    return normalise(records(), str(path), cfg, cols, labelled, counts)


def read_jsonl(path: Path, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    cols = columns(cfg)
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

    return normalise(chained(), str(path), cfg, cols, bool(state["labelled"]), counts)


def read_txt(path: Path, cfg: DataConfig, split: str, counts: Counter) -> Rows:
    """One text per line (blank lines skipped): unlabelled text of a single-text task."""
    cols = columns(cfg)
    if cols[1] is not None:
        raise DataError(f"{path}: a pair task's unlabelled rows need both texts; give a .tsv, .csv or .jsonl file "
                        f"with columns {cols[0]!r} and {cols[1]!r} (data.unlabelled)")

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for number, line in _decoded_lines(path):
            if line.strip():
                yield number, {cols[0]: line}

    return normalise(records(), str(path), cfg, cols, False, counts)


READERS = {"glue": read_tsv, "csv": read_csv, "jsonl": read_jsonl}
UNLABELLED_READERS = {".txt": read_txt, **{ext: READERS[kind] for ext, kind in EXTENSIONS.items()}}


def read_unlabelled(cfg: DataConfig, counts: Counter) -> Rows | None:
    """The texts of data.unlabelled: a .txt (one text per line), .tsv, .csv or .jsonl file (the task's text
    column(s)), gzip-compressed or not, or every such file in a folder (others, a README, are left alone);
    None when there are none. Each row passes the data.* policies, repeats aside (prepare drops those)."""
    path = Path(cfg.unlabelled)
    if not path.exists():
        if cfg.unlabelled == DEFAULT_UNLABELLED:  # the repository's empty folder, left out of a copy
            return None
        raise DataError(f"{path}: not found (data.unlabelled)")
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and plain_suffix(f) in UNLABELLED_READERS)
    elif plain_suffix(path) in UNLABELLED_READERS:
        files = [path]
    else:
        raise DataError(f"{path}: data.unlabelled reads {', '.join(UNLABELLED_READERS)} files (or .gz of them), or a "
                        "folder of them")
    every_row = cfg.model_copy(update={"duplicates": "keep"})
    rows: Rows = {"text": [], "text_pair": [], "label": [], "where": []}
    for f in files:
        for key, values in UNLABELLED_READERS[plain_suffix(f)](f, every_row, UNLABELLED, counts).items():
            rows[key] += values
    return rows if rows["text"] else None


def split_files(cfg: DataConfig) -> dict[str, tuple[str, ...]]:
    """Each split the task has, and the file names (without extension) it may be found under."""
    p = preset(cfg)
    return {"train": ("train",), "dev": (*p.dev, "dev", "validation"), **{k: (v,) for k, v in p.extra.items()},
            "test": ("test", *(f"test{d.removeprefix('dev')}" for d in p.dev if d != "dev"))}


def _find_split_file(folder: Path, names: tuple[str, ...], fmt: str) -> Path | None:
    """The file of a split: the first of its names that has one; two files under that name (train.tsv
    and train.csv) are an error rather than a silent choice."""
    exts = [ext for ext, kind in EXTENSIONS.items() if fmt in ("auto", kind)]
    for name in names:
        found = [c for ext in exts for c in (folder / f"{name}{ext}", folder / f"{name}{ext}.gz") if c.is_file()]
        if len(found) > 1:
            raise DataError(f"{folder}: {' and '.join(f.name for f in found)} are both there; keep one, or choose "
                            "the format with data.format")
        if found:
            return found[0]
    return None


def read_folder(folder: Path, cfg: DataConfig, counts: dict[str, Counter]) -> dict[str, Rows]:
    splits: dict[str, Rows] = {}
    for split, names in split_files(cfg).items():
        path = _find_split_file(folder, names, cfg.format)
        if path is None:
            if split in REQUIRED_SPLITS:
                wanted = "|".join(ext for ext, kind in EXTENSIONS.items() if cfg.format in ("auto", kind))
                raise DataError(f"{folder}: no {split} file ({names[0]}.{{{wanted.replace('.', '')}}}, or .gz)")
            continue
        splits[split] = READERS[EXTENSIONS[plain_suffix(path)]](path, cfg, split, counts.setdefault(split, Counter()))
    return splits


def read_hub(dataset_id: str, cfg: DataConfig, counts: dict[str, Counter]) -> dict[str, Rows]:
    """A Hub dataset through `datasets.load_dataset` (needs network access or a local HF cache)."""
    import datasets

    try:
        loaded = datasets.load_dataset(dataset_id, cfg.hub_config)
    except Exception as exc:  # the datasets library raises many types for "not reachable/not found"
        raise DataError(f"data.source: cannot load Hub dataset {dataset_id!r} ({type(exc).__name__}: {exc})") from None
    cols = columns(cfg, hub=True)
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
        labelled = labels is not None and any(str(v) != "-1" for v in labels)  # GLUE test splits hold -1
        records = ((i + 1, rec) for i, rec in enumerate(part))
        splits[split] = normalise(records, where, cfg, cols, labelled, counts.setdefault(split, Counter()))
    return splits


def read_raw(cfg: DataConfig, counts: dict[str, Counter] | None = None) -> dict[str, Rows]:
    """Every split of the configured source, validated by the row policies, labels still raw; `counts`
    (if given) receives, per split, how many rows each data.* policy dropped or changed."""
    counts = {} if counts is None else counts
    source = Path(cfg.source)
    if hub_source(cfg.source, cfg.format):
        return read_hub(cfg.source, cfg, counts)
    if not source.exists():
        raise DataError(f"{source}: data folder not found (data.source)")
    if source.is_file():
        raise DataError(f"{source}: data.source must be a folder with train/dev files, not a file")
    return read_folder(source, cfg, counts)


def hub_source(source: str, data_format: str = "auto", root: Path = Path(".")) -> bool:
    """Whether `data.source` names a Hub dataset (`data.format: hub`, or an id like `nyu-mll/glue` that is
    no path under `root`) rather than a local folder."""
    if data_format != "auto":
        return data_format == "hub"
    looks_like_id = bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source)) and not source.startswith(".")
    return looks_like_id and not (root / source).exists()
