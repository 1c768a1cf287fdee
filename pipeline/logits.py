"""Stage `teacher_logits`: one pass of the fine-tuned teacher over train + augmented text; every student
that learns from the teacher's logits reads them from here instead of running the teacher again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline.artifacts import AUGMENTED, CHECKPOINTS, PREPARED, TEACHER, TEACHER_LOGITS, load_dataset_dir, save_dataset, \
    texts_of
from pipeline.checkpoint import CheckpointDir, fingerprint
from pipeline.inference import CHUNK_ROWS, content_key, device, resumable_logits, use_bf16
from pipeline.models.hf import load_teacher
from pipeline.tasks import prepared_task

if TYPE_CHECKING:
    from pipeline.config import Params


def build_logits(params: Params) -> dict[str, Any]:
    """Teacher logits for train + augmented rows, saved beside their text (data/teacher_logits); returns
    a summary (the artifact's meta plus the pass's speed)."""
    import datasets

    task = prepared_task()
    train = load_dataset_dir(PREPARED)["train"]
    augmented = load_dataset_dir(AUGMENTED)
    train_texts, train_pairs = texts_of(train, task.is_pair)
    aug_texts, aug_pairs = texts_of(augmented, task.is_pair)
    texts = train_texts + aug_texts
    pairs = train_pairs + aug_pairs if task.is_pair else None
    model, tokenizer = load_teacher()
    model.to(device())
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(CHECKPOINTS / "teacher_logits", fingerprint(
        [params.data.max_length, CHUNK_ROWS, bf16], [TEACHER, PREPARED, AUGMENTED]))
    start = time.perf_counter()
    logits = resumable_logits(model, tokenizer, texts, pairs, batch_size=params.teacher_logits.batch_size,
                              max_length=params.data.max_length, checkpoints=checkpoints, desc="teacher logits",
                              bf16=bf16)
    seconds = time.perf_counter() - start
    n_train = len(train)
    rows = {
        "text": texts,
        "text_pair": pairs if pairs is not None else [None] * len(texts),
        "label": list(train["label"]) + [task.unlabelled] * len(augmented),
        "origin": ["train"] * n_train + ["augment"] * len(augmented),
        "source_idx": list(range(n_train)) + list(augmented["source_idx"]),
        "key": [content_key(t, p) for t, p in zip(texts, pairs or [None] * len(texts))],
        "logits": logits.tolist(),
    }
    features = datasets.Features({
        "text": datasets.Value("string"), "text_pair": datasets.Value("string"),
        "label": datasets.Value("float32" if task.regression else "int64"), "origin": datasets.Value("string"),
        "source_idx": datasets.Value("int64"), "key": datasets.Value("string"),
        "logits": datasets.Sequence(datasets.Value("float32")),
    })
    meta = {"rows": len(texts), "train_rows": n_train, "augmented_rows": len(augmented)}
    save_dataset(datasets.Dataset.from_dict(rows, features=features), TEACHER_LOGITS, meta=meta)
    checkpoints.complete()
    # Timing goes to the report, not into the artifact: same inputs must give the same artifact.
    return {**meta, "seconds": round(seconds, 1), "examples_per_second": round(len(texts) / max(seconds, 1e-9), 1),
            "device": str(device()), "precision": "bf16" if bf16 else "fp32"}
