"""Batched, length-bucketed inference for Hugging Face sequence classifiers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.checkpoint import CheckpointDir, fingerprint
from pipeline.errors import ConfigError


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def bf16_native(dev: torch.device) -> bool:
    """Whether `dev` multiplies bf16 matrices natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16
    or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    caps = torch.cpu.get_capabilities() if dev.type == "cpu" else {}
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def use_bf16(precision: str, dev: torch.device | None = None) -> bool:
    """Whether a stage computes in bf16 mixed precision (params `precision`: auto, fp32 or bf16)."""
    dev = dev or device()
    if precision == "auto":
        return bf16_native(dev)
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision: bf16, but {torch.cuda.get_device_name(dev)} has no bf16 (use auto or fp32)")
    return precision == "bf16"


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
                      desc: str = "inference", bf16: bool = False) -> np.ndarray:
    """Logits for every example, in input order: one pass, length-sorted batches, dynamic padding
    (under bf16 autocast when `bf16`; the logits are returned as float32 either way)."""
    model.eval()
    dev = next(model.parameters()).device
    enc = encode(tokenizer, texts, pairs, max_length)
    buckets = length_buckets([len(ids) for ids in enc["input_ids"]], batch_size)
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="ex", disable=not progress, mininterval=2) as bar:
        for idx in buckets:
            batch = tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="pt")
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(**{k: t.to(dev) for k, t in batch.items()}).logits
            out[idx] = logits.float().cpu().numpy()
            bar.update(len(idx))
    return out


def content_key(text: str, pair: str | None) -> str:
    """Stable key of an example's content: students look teacher outputs up by it."""
    return hashlib.sha1(f"{text}\x1f{pair or ''}".encode("utf-8")).hexdigest()


CHUNK_ROWS = 4096


def resumable_logits(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
                     max_length: int, checkpoints: CheckpointDir, desc: str = "inference",
                     bf16: bool = False) -> np.ndarray:
    """classifier_logits over chunks of CHUNK_ROWS rows, each saved under `checkpoints` when done,
    so an interrupted pass resumes at the first missing chunk."""
    checkpoints.start()
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with tqdm(total=len(texts), desc=desc, unit="ex", mininterval=2) as bar:
        for k, start in enumerate(range(0, len(texts), CHUNK_ROWS)):
            end = min(start + CHUNK_ROWS, len(texts))
            part = checkpoints.folder / f"part-{k:05d}.npy"
            if part.is_file():
                out[start:end] = np.load(part)
            else:
                out[start:end] = classifier_logits(model, tokenizer, texts[start:end],
                                                   pairs[start:end] if pairs is not None else None,
                                                   batch_size=batch_size, max_length=max_length, progress=False,
                                                   bf16=bf16)
                tmp = part.with_name(f".{part.stem}.tmp.npy")
                np.save(tmp, out[start:end])
                tmp.replace(part)
            bar.update(end - start)
    return out


def build_teacher_logits(params, teacher_dir: Path, prepared_dir: Path, augmented_dir: Path, out_dir: Path,
                         checkpoint_dir: Path) -> dict:
    """Teacher logits for train + augmented rows, saved beside their text in `out_dir`; returns a
    summary (the artifact's meta plus the pass's speed)."""
    import datasets

    from pipeline.data import load_dataset_dir, save_dataset, texts_of
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
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.data.max_length, CHUNK_ROWS, bf16], [teacher_dir, prepared_dir, augmented_dir]))
    start = time.perf_counter()
    logits = resumable_logits(model, tokenizer, texts, pairs, batch_size=params.teacher_logits.batch_size,
                              max_length=params.data.max_length, checkpoints=checkpoints, desc="teacher logits",
                              bf16=bf16)
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
    meta = {"rows": len(texts), "train_rows": n_train, "augmented_rows": len(augmented)}
    save_dataset(datasets.Dataset.from_dict(rows, features=features), out_dir, meta=meta)
    checkpoints.complete()
    # Timing goes to the report, not into the artifact: same inputs must give the same artifact.
    return {**meta, "seconds": round(seconds, 1), "examples_per_second": round(len(texts) / max(seconds, 1e-9), 1),
            "device": str(device()), "precision": "bf16" if bf16 else "fp32"}
