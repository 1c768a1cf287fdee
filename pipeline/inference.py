"""Batched, length-bucketed inference for Hugging Face sequence classifiers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> dict[str, list]:
    """Tokenise without padding (padding happens per batch)."""
    return dict(tokenizer(list(texts), list(pairs) if pairs is not None else None,
                          truncation=True, max_length=max_length))


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches: each batch pads to a similar length."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def classifier_logits(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
                      batch_size: int = 128, max_length: int = 128, progress: bool = True,
                      desc: str = "inference") -> np.ndarray:
    """Logits for every example, in input order: one pass, length-sorted batches, dynamic padding."""
    model.eval()
    dev = next(model.parameters()).device
    enc = encode(tokenizer, texts, pairs, max_length)
    buckets = length_buckets([len(ids) for ids in enc["input_ids"]], batch_size)
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="ex", disable=not progress, mininterval=2) as bar:
        for idx in buckets:
            batch = tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="pt")
            logits = model(**{k: t.to(dev) for k, t in batch.items()}).logits
            out[idx] = logits.float().cpu().numpy()
            bar.update(len(idx))
    return out


def content_key(text: str, pair: str | None) -> str:
    """Stable key of an example's content: students look teacher outputs up by it."""
    return hashlib.sha1(f"{text}\x1f{pair or ''}".encode("utf-8")).hexdigest()


def build_teacher_logits(params, teacher_dir: Path, prepared_dir: Path, augmented_dir: Path):
    """Teacher logits for train + augmented rows, stored beside their text; returns (Dataset, meta)."""
    import datasets

    from pipeline.data import load_dataset_dir, texts_of
    from pipeline.models.teacher import load_classifier, load_tokenizer
    from pipeline.tasks import get_task

    task = get_task(params.data.task)
    train = load_dataset_dir(prepared_dir)["train"]
    augmented = load_dataset_dir(augmented_dir)
    train_texts, train_pairs = texts_of(train, task.is_pair)
    aug_texts, aug_pairs = texts_of(augmented, task.is_pair)
    texts = train_texts + aug_texts
    pairs = train_pairs + aug_pairs if task.is_pair else None
    key = "teacher (models/teacher)"
    model = load_classifier(str(teacher_dir), key=key).to(device())
    tokenizer = load_tokenizer(str(teacher_dir), key=key)
    start = time.perf_counter()
    logits = classifier_logits(model, tokenizer, texts, pairs, batch_size=params.teacher_logits.batch_size,
                               max_length=params.data.max_length, desc="teacher logits")
    seconds = time.perf_counter() - start
    n_train = len(train)
    rows = {
        "text": texts,
        "text_pair": pairs if pairs is not None else [None] * len(texts),
        "label": list(train["label"]) + [-1] * len(augmented),
        "origin": ["train"] * n_train + ["augment"] * len(augmented),
        "source_idx": list(range(n_train)) + list(augmented["source_idx"]),
        "key": [content_key(t, p) for t, p in zip(texts, pairs or [None] * len(texts))],
        "logits": logits.tolist(),
    }
    features = datasets.Features({
        "text": datasets.Value("string"), "text_pair": datasets.Value("string"),
        "label": datasets.Value("int64"), "origin": datasets.Value("string"),
        "source_idx": datasets.Value("int64"), "key": datasets.Value("string"),
        "logits": datasets.Sequence(datasets.Value("float32")),
    })
    meta = {"rows": len(texts), "train_rows": n_train, "augmented_rows": len(augmented),
            "seconds": round(seconds, 1), "examples_per_second": round(len(texts) / max(seconds, 1e-9), 1),
            "device": str(device())}
    return datasets.Dataset.from_dict(rows, features=features), meta
