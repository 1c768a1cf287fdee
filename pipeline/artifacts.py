"""Where every artifact lives, and how it is written: atomically, so a killed stage leaves the old
artifact or none, never half of one.

The paths are relative to the repository root; dvc.yaml (rendered by pipeline/orchestration/dag.py) names the same
ones, from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline import distributed
from pipeline.errors import DataError

PREPARED = Path("data/prepared")
UNLABELLED = "unlabelled"  # the prepared split of data.unlabelled's texts (and their rows' origin in teacher_logits)
AUGMENTED = Path("data/augmented")  # one folder per augmentation method
TEACHER_LOGITS = Path("data/teacher_logits")
TEACHER = Path("models/teacher")
TEACHER_NAME = "teacher (models/teacher)"  # how errors name the fine-tuned teacher
GENERAL = Path("models/general")  # general-distillation students, one folder per objective
STEPS = Path("models/steps")  # earlier steps of multi-step students: models/steps/<student>/<step>
STUDENTS = Path("models/students")  # every finished student, one folder each
EXPORTS = Path("exports")  # served models: model folder, ONNX fp32 + int8, model card
SELECTED = Path("selected")  # the export the select rule picks (DVC keeps it out of exports/: outputs may not nest)
REPORTS = Path("reports")
CHECKPOINTS = Path("checkpoints")  # resumable state of long stages (scratch, not a DVC output)


HISTORY = REPORTS / "history"  # training logs (Trainer log history), one file per training run


def augmented_dir(method: str) -> Path:
    return AUGMENTED / method


def student_dir(name: str) -> Path:
    return STUDENTS / name


def general_dir(objective: str) -> Path:
    return GENERAL / objective


def general_history(objective: str) -> Path:
    return HISTORY / f"general_distill_{objective}.json"


# ---------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success it replaces `final`, on error it is removed. In a
    data-parallel stage only rank 0 writes: another process gets a scratch path that is then dropped."""
    if not distributed.is_main():
        with tempfile.TemporaryDirectory(prefix=f"rank{distributed.rank()}-") as scratch:
            yield Path(scratch) / Path(final).name
        return
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
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- inputs
def open_input(path: Path):
    """A binary handle on an input file; `.gz` files are decompressed as they are read."""
    import gzip

    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def plain_suffix(path: Path) -> str:
    """A file's type suffix, a `.gz` after it aside: train.tsv.gz -> .tsv."""
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


# ---------------------------------------------------------------- datasets
def save_dataset(dataset, path: str | Path, meta: dict | None = None) -> None:
    """save_to_disk a Dataset/DatasetDict atomically, with an optional meta.json beside it."""
    with atomic_path(path) as tmp:
        dataset.save_to_disk(str(tmp))
        if meta is not None:
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_dataset_dir(path: str | Path):
    import datasets

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: artifact not found (run the stage that makes it: dvc repro)")
    # map() would otherwise write cache files into the artifact folder, modifying a DVC output.
    datasets.disable_caching()
    return datasets.load_from_disk(str(path))


def texts_of(split, is_pair: bool) -> tuple[list[str], list[str] | None]:
    """A split's text columns as lists (text_pair None for single-sentence tasks)."""
    return list(split["text"]), (list(split["text_pair"]) if is_pair else None)
