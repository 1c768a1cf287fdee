"""Model inputs from normalised rows: tokenisation for Transformer models (no padding until a batch is
made), length buckets, the padding collator, and the training rows a student step learns from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import UNLABELLED, load_dataset_dir, texts_of
from pipeline.params.schema import TOP_UP, UNIFORM
from pipeline.tasks import Task
from pipeline.text import MASK

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> dict[str, list]:
    """Tokenise without padding (padding happens per batch); a masked word of augmented text ([MASK]) becomes
    the tokenizer's own mask token (XLM-RoBERTa's <mask>)."""
    mask = getattr(tokenizer, "mask_token", None)
    if mask and mask != MASK:
        texts = [t.replace(MASK, mask) for t in texts]
        pairs = None if pairs is None else [p.replace(MASK, mask) for p in pairs]
    return dict(tokenizer(list(texts), list(pairs) if pairs is not None else None,
                          truncation=True, max_length=max_length))


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches: each batch pads to a similar length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def pad_batch(tokenizer, enc: dict[str, Sequence], idx: Sequence[int]) -> dict[str, np.ndarray]:
    """Rows `idx` of unpadded token fields (encode's output), padded to the longest of them as
    tokenizer.pad pads (its pad id and side; mask 0, token type pad_token_type_id): int64 arrays of the
    model's input fields. One numpy fill per field, not tokenizer.pad's per-row Python."""
    rows = [enc["input_ids"][i] for i in idx]
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max())
    columns = np.arange(width)[None, :]
    filled = (columns >= (width - lengths)[:, None]) if tokenizer.padding_side == "left" else (columns < lengths[:, None])
    pads = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": tokenizer.pad_token_type_id}
    out = {}
    for key in MODEL_INPUTS:
        if key in enc:
            values = np.full((len(rows), width), pads[key], dtype=np.int64)
            values[filled] = np.concatenate([enc[key][i] for i in idx])
            out[key] = values
    return out


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The fields a Transformer's forward takes, from a batch that may carry more."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def token_collator(tokenizer):
    """Pad token fields per batch; carry labels, example ids and teacher logits as tensors."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        fields = model_inputs(rows[0])
        batch = {k: torch.from_numpy(v) for k, v in
                 pad_batch(tokenizer, {k: [r[k] for r in rows] for k in fields}, range(len(rows))).items()}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows])  # class ids (int64) or scores (float32)
        if "example_ids" in rows[0]:
            batch["example_ids"] = torch.tensor([r["example_ids"] for r in rows], dtype=torch.long)
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.tensor([r["teacher_logits"] for r in rows], dtype=torch.float32)
        return batch

    return collate


def encode_rows(tokenizer, split, task: Task, max_length: int, with_logits: bool = False):
    """A datasets.Dataset of token ids (+ labels, + teacher logits) for a prepared/teacher_logits split;
    `length` is what length-grouped batching sorts by. Rows of teacher_logits also carry `example_ids`:
    their source train row and the content key of their text, what tells an example's near-copies."""
    import datasets

    texts, pairs = texts_of(split, task.is_pair)
    rows = encode(tokenizer, texts, pairs, max_length)
    rows["labels"] = list(split["label"])
    rows["length"] = [len(ids) for ids in rows["input_ids"]]
    if "source_idx" in split.column_names:
        rows["example_ids"] = [[source, int(key[:15], 16)] for source, key in zip(split["source_idx"], split["key"])]
    if with_logits:
        rows["teacher_logits"] = list(split["logits"])
    return datasets.Dataset.from_dict(rows)


def sample_rows(split, limit: int | None, seed: int):
    """A seeded random sample of `limit` rows (all rows when limit is None or larger)."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))


def task_rows(logits_dir: Path, augmentation: str | None, limit: int | None, seed: int,
              augmented_rows: str = TOP_UP, unlabelled: bool = False):
    """Train rows (+ the unlabelled rows, + the rows of one augmentation) with their cached teacher logits,
    optionally a seeded sample of `limit` rows: top_up takes train rows first, then unlabelled rows, and
    augmented rows only for the rest of the sample; uniform samples every row alike."""
    from datasets import concatenate_datasets

    rows = load_dataset_dir(logits_dir)
    origin = np.asarray(rows["origin"])
    keep = (origin == "train") | (origin == augmentation) | (unlabelled & (origin == UNLABELLED))
    if not keep.all():
        rows, origin = rows.select(np.flatnonzero(keep)), origin[keep]
    groups = [g for g in (origin == "train", origin == UNLABELLED, (origin != "train") & (origin != UNLABELLED))
              if g.any()]
    if augmented_rows == UNIFORM or limit is None or limit >= len(rows) or len(groups) == 1:
        return sample_rows(rows, limit, seed)
    parts, left = [], limit
    for group in groups:
        if left <= 0:
            break
        part = rows.select(np.flatnonzero(group))
        parts.append(sample_rows(part, left, seed))
        left -= len(parts[-1])
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def row_origins(rows) -> dict[str, int]:
    """How many training rows come from where: train, unlabelled, an augmentation (a stage report's `rows`)."""
    from collections import Counter

    if "origin" in rows.column_names:
        return dict(sorted(Counter(rows["origin"]).items()))
    return {"train": len(rows)}
