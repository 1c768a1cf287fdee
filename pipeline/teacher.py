"""Stage `teacher_finetune`: the pretrained teacher fine-tuned on the task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import training
from pipeline.artifacts import CHECKPOINTS, HISTORY, PREPARED, TEACHER, load_dataset_dir
from pipeline.data.batches import encode_rows, sample_rows, token_collator
from pipeline.models import encoders
from pipeline.models.hf import load_classifier, load_config, load_tokenizer
from pipeline.tasks import prepared_task

if TYPE_CHECKING:
    from pipeline.config import Params


def finetune(params: Params) -> dict[str, Any]:
    """Fine-tune the pretrained teacher on the task's train split, or a sample of `teacher.max_rows` of it
    (cross-entropy on gold labels, dev evaluation per epoch); save it with save_pretrained + its tokenizer."""
    from transformers import set_seed

    task = prepared_task()
    cfg = params.teacher
    prepared = load_dataset_dir(PREPARED)
    encoders.family(load_config(cfg.pretrained))  # a family distillation can read: a clear error before any loading
    tokenizer = load_tokenizer(cfg.pretrained)
    set_seed(params.seed)
    model = load_classifier(cfg.pretrained, task)

    def save(folder) -> None:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    return training.run(training.Job(
        model=model, train=encode_rows(tokenizer, sample_rows(prepared["train"], cfg.max_rows, params.seed), task,
                                       params.data.max_length),
        dev=encode_rows(tokenizer, prepared["dev"], task, params.data.max_length), task=task,
        collate=token_collator(tokenizer), budget=cfg, weight_decay=cfg.weight_decay,
        fingerprint=[params.seed, params.data.task, params.data.max_length, cfg.model_dump()], inputs=[PREPARED],
        save=save, out=TEACHER, history=HISTORY / "teacher.json", checkpoints=CHECKPOINTS / "teacher_finetune",
        summary={"pretrained": cfg.pretrained}), params)
