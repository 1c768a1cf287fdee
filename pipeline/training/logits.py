"""Stage `teacher_logits`: one pass of the fine-tuned teacher over the train rows, the unlabelled rows
(data.unlabelled) and the rows of every augmentation in augment.methods; every student that learns from the
teacher's logits reads them from here (the rows it learns from, by `origin`) instead of running the teacher
again."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline import distributed
from pipeline.artifacts import (CHECKPOINTS, PREPARED, TEACHER, TEACHER_LOGITS, UNLABELLED, augmented_dir,
                                load_dataset_dir, save_dataset, texts_of)
from pipeline.models.hf import load_teacher
from pipeline.tasks import prepared_task
from pipeline.training.checkpoint import CheckpointDir, fingerprint
from pipeline.training.inference import (CHUNK_ROWS, bf16_linears, content_key, device, resumable_logits,
                                         use_attention_for, use_bf16)

if TYPE_CHECKING:
    from pipeline.params.config import Params


def pass_teacher(bf16: bool):
    """The fine-tuned teacher and its tokenizer as the pass runs them: on the stage's device, its attention
    implementation, and (under bf16) its Linear weights stored in bf16 once."""
    model, tokenizer = load_teacher()
    model.to(device())
    use_attention_for(model)
    if bf16:
        bf16_linears(model)
    return model, tokenizer


def build_logits(params: Params) -> dict[str, Any]:
    """Teacher logits for train + augmented rows, saved beside their text (data/teacher_logits); returns
    a summary (the artifact's meta plus the pass's speed)."""
    import datasets

    task = prepared_task()
    prepared = load_dataset_dir(PREPARED)
    train = prepared["train"]
    unlabelled = prepared[UNLABELLED] if UNLABELLED in prepared else None
    methods = params.augment.methods
    augmented = {m: load_dataset_dir(augmented_dir(m)) for m in methods}
    texts, pairs = texts_of(train, task.is_pair)
    origin, source_idx = ["train"] * len(train), list(range(len(train)))
    # unlabelled rows follow the train rows, numbered after them (as augmentation numbers its sources)
    more = ([(UNLABELLED, unlabelled, range(len(train), len(train) + len(unlabelled)))]
            if unlabelled is not None else []) + \
        [(method, rows, rows["source_idx"]) for method, rows in augmented.items()]
    for name, rows, sources in more:
        more_texts, more_pairs = texts_of(rows, task.is_pair)
        texts, pairs = texts + more_texts, (pairs + more_pairs if task.is_pair else None)
        origin += [name] * len(rows)
        source_idx += list(sources)
    bf16 = use_bf16(params.precision)
    model, tokenizer = pass_teacher(bf16)
    checkpoints = CheckpointDir(CHECKPOINTS / "teacher_logits", fingerprint(
        [params.data.max_length, CHUNK_ROWS, bf16], [TEACHER, PREPARED, *map(augmented_dir, methods)]))
    start = time.perf_counter()
    logits = resumable_logits(model, tokenizer, texts, pairs, batch_size=params.teacher_logits.batch_size,
                              max_length=params.data.max_length, checkpoints=checkpoints, desc="teacher logits",
                              bf16=bf16)
    seconds = time.perf_counter() - start
    n_train = len(train)
    meta = {"rows": len(texts), "train_rows": n_train, "unlabelled_rows": 0 if unlabelled is None else len(unlabelled),
            "augmented_rows": {m: len(r) for m, r in augmented.items()}}
    if logits is None:  # a data-parallel process other than rank 0: its share is in rank 0's logits
        return meta
    rows = {
        "text": texts,
        "text_pair": pairs if pairs is not None else [None] * len(texts),
        "label": list(train["label"]) + [task.unlabelled] * (len(texts) - n_train),
        "origin": origin,
        "source_idx": source_idx,
        "key": [content_key(t, p) for t, p in zip(texts, pairs or [None] * len(texts))],
        "logits": logits.tolist(),
    }
    features = datasets.Features({
        "text": datasets.Value("string"), "text_pair": datasets.Value("string"),
        "label": datasets.Value("float32" if task.regression else "int64"), "origin": datasets.Value("string"),
        "source_idx": datasets.Value("int64"), "key": datasets.Value("string"),
        "logits": datasets.Sequence(datasets.Value("float32")),
    })
    save_dataset(datasets.Dataset.from_dict(rows, features=features), TEACHER_LOGITS, meta=meta)
    checkpoints.complete()
    # Timing goes to the report, not into the artifact: same inputs must give the same artifact.
    summary = {**meta, "seconds": round(seconds, 1), "examples_per_second": round(len(texts) / max(seconds, 1e-9), 1),
               "device": str(device()), "precision": "bf16" if bf16 else "fp32"}
    if distributed.world_size() > 1:
        summary["processes"] = distributed.world_size()
    return summary
