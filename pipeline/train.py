"""One training loop for every recipe: Hugging Face `Trainer` (progress, logging, schedules, devices).

A recipe is a model whose forward returns {"loss", "logits"}; the teacher is a plain HF classifier
(loss from its labels), students are wrapped in `Distiller`, which applies the recipe's loss.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline import losses
from pipeline.checkpoint import CheckpointDir, fingerprint
from pipeline.config import BiLSTMStudentConfig, Params
from pipeline.data import atomic_path, load_dataset_dir, texts_of
from pipeline.errors import ConfigError
from pipeline.inference import use_bf16
from pipeline.models import bilstm
from pipeline.models.teacher import load_classifier, load_tokenizer, resolve_pretrained
from pipeline.tasks import Task, compute_metrics, get_task

log = logging.getLogger(__name__)


def training_arguments(output_dir: str, *, epochs: float, learning_rate: float, batch_size: int, seed: int,
                       checkpoint_steps: int, warmup: float = 0.0, weight_decay: float = 0.0,
                       eval_batch_size: int = 128, evaluate: bool = True, group_by_length: bool = True,
                       bf16: bool = False):
    """Trainer settings shared by every recipe: dev evaluation per epoch (when `evaluate`), resumable
    checkpoints, length-grouped batches (padding waste matters on CPU), fused AdamW (its optimizer
    step is several times faster on CPU than the per-tensor loop, which dominates small models),
    bf16 autocast when `bf16` (see pipeline.inference.use_bf16)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="steps",
        save_steps=checkpoint_steps,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=10,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        optim="adamw_torch_fused",
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # Trainer refuses CPU bf16 unless told
        seed=seed,
        data_seed=seed,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_drop_last=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def metrics_fn(task: Task):
    def compute(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return compute_metrics(task, np.asarray(logits), np.asarray(prediction.label_ids))

    return compute


def train_resumable(trainer, checkpoints: CheckpointDir):
    """trainer.train(), resuming from the newest checkpoint of an interrupted run of the same inputs."""
    resume = checkpoints.latest_trainer_checkpoint() if checkpoints.start() else None
    if resume:
        log.info("resuming from %s", resume)
    return trainer.train(resume_from_checkpoint=resume)


def write_history(trainer, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(trainer.state.log_history, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- teacher
def finetune_teacher(params: Params, out_dir: Path, history_path: Path, prepared_dir: Path,
                     checkpoint_dir: Path) -> dict[str, Any]:
    """Fine-tune the pretrained teacher on the task's train split; save it (save_pretrained + tokenizer)."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    task = get_task(params.data.task)
    cfg = params.teacher
    prepared = load_dataset_dir(prepared_dir)
    tokenizer = load_tokenizer(cfg.pretrained)
    set_seed(params.seed)
    model = load_classifier(cfg.pretrained, task)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        enc = tokenizer(batch["text"], batch["text_pair"] if task.is_pair else None,
                        truncation=True, max_length=params.data.max_length)
        enc["labels"] = batch["label"]
        enc["length"] = [len(ids) for ids in enc["input_ids"]]
        return enc

    columns = prepared["train"].column_names
    train = prepared["train"].map(encode, batched=True, remove_columns=columns, desc="tokenising train")
    dev = prepared["dev"].map(encode, batched=True, remove_columns=columns, desc="tokenising dev")
    collator = DataCollatorWithPadding(tokenizer)
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, cfg.model_dump(), bf16], [prepared_dir]))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, warmup=cfg.warmup_ratio,
                              weight_decay=cfg.weight_decay, checkpoint_steps=params.checkpoint_steps, bf16=bf16)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                      data_collator=lambda rows: collator([{k: v for k, v in r.items() if k != "length"}
                                                           for r in rows]),
                      processing_class=tokenizer, compute_metrics=metrics_fn(task))
    result = train_resumable(trainer, checkpoints)
    final = trainer.evaluate()
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    write_history(trainer, history_path)
    checkpoints.complete()
    summary = {
        "pretrained": cfg.pretrained,
        "precision": "bf16" if bf16 else "fp32",
        "train_rows": len(train),
        "train_seconds": round(result.metrics["train_runtime"], 1),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 1),
        **{f"dev_{m}": round(final[f"eval_{m}"], 4) for m in task.metrics},
    }
    log.info("teacher fine-tuned: %s", summary)
    return summary


# ---------------------------------------------------------------- students
class Distiller(nn.Module):
    """Wraps a student for Trainer: forward(batch) -> {"loss", "logits"} under the recipe's loss."""

    def __init__(self, student: nn.Module, alpha: float):
        super().__init__()
        self.student = student
        self.alpha = alpha

    def forward(self, labels: torch.Tensor | None = None, teacher_logits: torch.Tensor | None = None,
                num_items_in_batch: int | None = None, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        # num_items_in_batch: Trainer's gradient-accumulation hint; losses here are per-batch means.
        logits = self.student(**inputs)
        return {"loss": losses.tang_kd(logits, teacher_logits, labels, self.alpha), "logits": logits}


def bilstm_rows(tokenizer, texts: list[str], pairs: list[str] | None, labels: list[int],
                teacher_logits: list[list[float]] | None = None) -> dict[str, list]:
    """Training rows for a BiLSTM: its inputs plus labels and (for distillation) teacher logits."""
    rows = bilstm.encode(tokenizer, texts, pairs)
    rows["labels"] = list(labels)
    if teacher_logits is not None:
        rows["teacher_logits"] = teacher_logits
    return rows


def build_bilstm(cfg: BiLSTMStudentConfig, params: Params, task: Task, corpus: list[str]):
    """A fresh BiLSTM and its tokeniser, embeddings initialised from GloVe or the teacher's."""
    if cfg.embedding == "glove":
        glove_words, glove = bilstm.glove_vectors()
        tokenizer = bilstm.WordTokenizer.build(corpus, cfg.max_words, extra=glove_words[: cfg.glove_vocab])
        weights, coverage = bilstm.init_embeddings(tokenizer, glove_words, glove, params.seed)
        log.info("vocabulary %d words, %.1f%% with GloVe vectors", len(tokenizer.vocab), 100 * coverage)
    else:
        from transformers import AutoModel

        source = resolve_pretrained(params.teacher.pretrained)
        tokenizer = bilstm.WordPieceTokenizer(load_tokenizer(params.teacher.pretrained), cfg.max_words)
        weights = AutoModel.from_pretrained(source).get_input_embeddings().weight.detach().clone()
    model = bilstm.BiLSTMClassifier(
        vocab_size=weights.shape[0], embedding_dim=weights.shape[1], hidden=cfg.hidden, dense=cfg.dense,
        num_labels=task.num_labels, dropout=cfg.dropout, is_pair=task.is_pair, pad_id=tokenizer.pad_id,
        freeze_embedding=cfg.freeze_embedding)
    with torch.no_grad():
        model.embedding.weight.copy_(weights)
    return model, tokenizer


def train_student(name: str, params: Params, out_dir: Path, history_path: Path, prepared_dir: Path,
                  logits_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """Train student `name` by its recipe; save its folder; return a summary with the dev metric."""
    from transformers import Trainer, set_seed

    if name not in params.students:
        raise ConfigError(f"students.{name}: no such student in params (have: {', '.join(params.students)})")
    cfg = params.students[name]
    task = get_task(params.data.task)
    prepared = load_dataset_dir(prepared_dir)
    if cfg.train_on == "teacher_logits":
        source = load_dataset_dir(logits_dir)
        teacher = list(source["logits"])
    else:
        source, teacher = prepared["train"], None
    texts, pairs = texts_of(source, task.is_pair)
    set_seed(params.seed)
    model, tokenizer = build_bilstm(cfg, params, task, texts + (pairs or []))

    import datasets

    train = datasets.Dataset.from_dict(bilstm_rows(tokenizer, texts, pairs, list(source["label"]), teacher))
    dev = datasets.Dataset.from_dict(bilstm_rows(tokenizer, *texts_of(prepared["dev"], task.is_pair),
                                                 list(prepared["dev"]["label"])))
    inputs = [prepared_dir] + ([logits_dir] if teacher is not None else [])
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.teacher.pretrained, cfg.model_dump()], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, checkpoint_steps=params.checkpoint_steps)
    trainer = Trainer(model=Distiller(model, cfg.alpha if teacher is not None else 1.0), args=args,
                      train_dataset=train, eval_dataset=dev,
                      data_collator=lambda rows: bilstm.collate(rows, tokenizer.pad_id),
                      compute_metrics=metrics_fn(task))
    result = train_resumable(trainer, checkpoints)
    final = trainer.evaluate()
    summary = {
        "student": name,
        "arch": cfg.arch,
        "train_on": cfg.train_on,
        "train_rows": len(train),
        "train_seconds": round(result.metrics["train_runtime"], 1),
        **{f"dev_{m}": round(final[f"eval_{m}"], 4) for m in task.metrics},
    }
    with atomic_path(out_dir) as tmp:
        bilstm.save_bilstm(model, tokenizer, tmp, {"task": task.name, "labels": list(task.labels),
                                                   "student": name, "params": cfg.model_dump()})
    write_history(trainer, history_path)
    checkpoints.complete()
    log.info("student %s: %s", name, summary)
    return summary
