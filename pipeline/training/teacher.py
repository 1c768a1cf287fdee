"""Stage `teacher_finetune`: the teacher every later stage reads from models/teacher. Either the pretrained
teacher fine-tuned on the task (`teacher.finetune: true`), or the user's own fine-tuned classifier taken as
given (`teacher.finetune: false`): its head checked against the task (outputs, label names, reordered to the
task's order), evaluated on dev, saved with the task's labels, and not trained."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.artifacts import (CHECKPOINTS, HISTORY, PREPARED, TEACHER, atomic_path, load_dataset_dir, texts_of,
                                write_json)
from pipeline.data.batches import encode_rows, sample_rows, token_collator
from pipeline.errors import ConfigError, ModelError
from pipeline.models import encoders
from pipeline.models.hf import load_classifier, load_config, load_tokenizer, resolve_pretrained
from pipeline.params.schema import declared
from pipeline.tasks import Task, compute_metrics, prepared_task
from pipeline.training import driver as training
from pipeline.training.inference import classifier_logits, device, use_bf16

if TYPE_CHECKING:
    from pipeline.params.config import Params

HISTORY_FILE = HISTORY / "teacher.json"
PARAMS = ["precision", "seed", "teacher", "data.max_length"]  # what teacher_finetune reads (dvc.yaml's params)


def teacher(params: Params) -> dict[str, Any]:
    """Make models/teacher as params say; return the stage summary."""
    return finetune(params) if params.teacher.finetune else adopt(params)


def finetune(params: Params) -> dict[str, Any]:
    """Fine-tune the pretrained teacher on the task's train split, or a sample of `teacher.max_rows` of it
    (cross-entropy on gold labels for the steps its budget gives, dev evaluation per epoch or every
    `eval_steps`, the best evaluation's weights kept with `keep_best`); save it with save_pretrained + its tokenizer."""
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
        collate=token_collator(tokenizer), budget=cfg, weight_decay=cfg.weight_decay, eval_steps=cfg.eval_steps,
        keep_best=cfg.keep_best,
        fingerprint=declared(params, PARAMS), inputs=[PREPARED],
        save=save, out=TEACHER, history=HISTORY_FILE, checkpoints=CHECKPOINTS / "teacher_finetune",
        summary={"pretrained": cfg.pretrained}), params)


# ---------------------------------------------------------------- the user's fine-tuned teacher, as given
def output_order(model_labels: Sequence[str], task: Task, mapping: Mapping[str, str] | None = None) -> list[int]:
    """For each of the task's outputs, the model output that gives it: one output for regression; for
    classification the model's label names (its id2label) matched to the task's labels (their names or
    the raw values the data writes) case-insensitively, or the explicit `teacher.labels` mapping (task label
    -> model label name or output id). ConfigError naming both label sets and the key where they do not fit."""
    n = len(model_labels)
    shown = f"the model's {n} output(s) ({', '.join(model_labels)})"
    if task.regression:
        if n != 1:
            raise ConfigError(f"teacher.pretrained: {shown}, but task {task.name} is a regression (one output: a "
                              "score); give a regression model, or set teacher.finetune: true to train a head")
        return [0]
    wanted = ", ".join(task.labels)
    if n != task.num_labels:
        raise ConfigError(f"teacher.pretrained: {shown}, but task {task.name} has {task.num_labels} labels ({wanted}); "
                          "give a model fine-tuned for these labels, or set teacher.finetune: true to train a head")
    folded = [name.casefold() for name in model_labels]

    def output_of(value: str) -> int | None:
        value = str(value).strip()
        if value.casefold() in folded:
            return folded.index(value.casefold())
        return int(value) if value.isdigit() and int(value) < n else None

    if mapping is not None:
        unknown = sorted(set(mapping) - set(task.labels))
        missing = [label for label in task.labels if label not in mapping]
        if unknown or missing:
            raise ConfigError(f"teacher.labels: maps the task's labels ({wanted}); "
                              + (f"{', '.join(unknown)} is not one of them" if unknown else
                                 f"{', '.join(missing)} is not mapped"))
        order = [output_of(mapping[label]) for label in task.labels]
        bad = [f"{label}: {mapping[label]!r}" for label, o in zip(task.labels, order) if o is None]
        if bad:
            raise ConfigError(f"teacher.labels: {', '.join(bad)} is not one of {shown} or an output id 0..{n - 1}")
    else:
        raw = task.raw_labels or task.labels
        order = [next((folded.index(v.casefold()) for v in (name, code) if v.casefold() in folded), None)
                 for name, code in zip(task.labels, raw)]
    if None in order or len(set(order)) != n:
        if mapping is not None:
            raise ConfigError(f"teacher.labels: two task labels map to the same output of {shown}")
        example = ", ".join(f"{label}: {name}" for label, name in zip(task.labels, model_labels))
        raise ConfigError(f"teacher.pretrained: {shown} do not name the task's labels ({wanted}); set teacher.labels "
                          f"to map each task label to the model's label or output id, e.g. teacher.labels: "
                          f"{{{example}}}")
    return order


def model_label_names(config) -> list[str]:
    """The model's label names by output id (its config's id2label; transformers' LABEL_<i> when it has none)."""
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def load_given_classifier(spec: str):
    """A fine-tuned sequence classifier with the head it was trained with; ModelError when the checkpoint
    has no such head (a pretrained encoder: it needs fine-tuning)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    source = resolve_pretrained(spec)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its report of weights it had to initialise: the error below says it plainly
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"teacher.pretrained: cannot load a classifier from {source!r}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    head = encoders.family(model).head.split(".")[0]
    untrained = sorted(k for k in info.get("missing_keys", []) if k.split(".")[0] == head)
    if untrained:
        raise ModelError(f"teacher.pretrained: {source!r} has no trained classification head (no "
                         f"{', '.join(untrained[:2])} in its weights): it is a pretrained encoder, not a fine-tuned "
                         "classifier; set teacher.finetune: true to fine-tune it on the task")
    return model


def reorder_outputs(model, order: Sequence[int]) -> None:
    """Permute the classifier's output rows so that output i is the model's output order[i]."""
    import torch

    out = encoders.head(model)
    index = torch.tensor(list(order))
    with torch.no_grad():
        out.weight.copy_(out.weight[index].clone())
        if out.bias is not None:
            out.bias.copy_(out.bias[index].clone())


def adopt(params: Params) -> dict[str, Any]:
    """The user's fine-tuned classifier as the teacher: checked, reordered to the task's labels, evaluated on
    dev, saved to models/teacher with the task's labels in its config; nothing trained."""
    task = prepared_task()
    cfg = params.teacher
    config = load_config(cfg.pretrained)
    encoders.family(config)
    names = model_label_names(config)
    order = output_order(names, task, cfg.labels)
    model = load_given_classifier(cfg.pretrained).to(device())
    tokenizer = load_tokenizer(cfg.pretrained)
    reorder_outputs(model, order)
    for key, value in task.model_labels().items():
        setattr(model.config, key, value)
    dev = load_dataset_dir(PREPARED)["dev"]
    texts, pairs = texts_of(dev, task.is_pair)
    start = time.perf_counter()
    logits = classifier_logits(model, tokenizer, texts, pairs, max_length=params.data.max_length,
                               desc="teacher on dev", bf16=use_bf16(params.precision))
    seconds = time.perf_counter() - start
    metrics = compute_metrics(task, logits, np.asarray(dev["label"]))
    with atomic_path(TEACHER) as tmp:
        tmp.mkdir()
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    write_json(HISTORY_FILE, [])  # nothing was trained: an empty training log
    outputs = {label: names[o] for label, o in zip(task.labels, order)}
    return {"pretrained": cfg.pretrained, "finetuned": False, "outputs": outputs,
            "reordered": list(order) != list(range(len(order))),
            **{f"dev_{m}": round(v, 4) for m, v in metrics.items()}, "dev_rows": len(texts),
            "dev_seconds": round(seconds, 1)}
