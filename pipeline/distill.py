"""Transformer students: TinyBERT's general and two-step task distillation, DistilBERT-style students.

Every recipe is a small `nn.Module` whose forward returns {"loss", ...} so the one training loop of
pipeline/train.py (HF Trainer: schedules, checkpoints, resume, progress) runs all of them. Teachers
are held outside the module's parameters (frozen, never in the optimizer, never in checkpoints);
trainable extras such as TinyBERT's width projection are submodules, so the optimizer updates them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline import losses
from pipeline.checkpoint import CheckpointDir, fingerprint
from pipeline.config import DistilStudentConfig, IntermediateWeights, Params, TinyBERTStudentConfig
from pipeline.data import atomic_path, load_dataset_dir, texts_of
from pipeline.errors import ConfigError, DataError, ModelError
from pipeline.models import transformer as tfm
from pipeline.models.teacher import load_classifier, load_tokenizer, resolve_pretrained
from pipeline.tasks import Task, get_task
from pipeline.train import metrics_fn, train_resumable, training_arguments, write_history

log = logging.getLogger(__name__)

PROJECTION_FILE = "distill_projection.safetensors"
TEACHER_KEY = "teacher (models/teacher)"


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _Recipe(nn.Module):
    """Base of the training wrappers. Checkpoints store each shared tensor once (a student with tied
    input/output embeddings would otherwise be refused by safetensors); loading restores the tie."""

    _keys_to_ignore_on_save = None  # read by Trainer when it resumes a non-PreTrainedModel

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        seen: set[tuple[int, int]] = set()
        for name in list(state):
            tensor = state[name]
            ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
            if ident in seen:
                del state[name]
            seen.add(ident)
        return state


class _WithTeacher(_Recipe):
    """Holds a frozen teacher out of the module tree (not trained, not saved) and moves it along."""

    def __init__(self, teacher: nn.Module):
        super().__init__()
        object.__setattr__(self, "_teacher", _frozen(teacher))

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    def _teacher_on(self, device: torch.device) -> nn.Module:
        if next(self._teacher.parameters()).device != device:
            self._teacher.to(device)
        return self._teacher


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def resolve_layer_map(layer_map: Sequence[int] | None, student_layers: int, teacher_layers: int,
                      key: str) -> list[int]:
    if layer_map is None:
        return losses.uniform_layer_map(student_layers, teacher_layers)
    return tfm.check_layer_map(layer_map, student_layers, teacher_layers, key)


class IntermediateDistiller(_WithTeacher):
    """TinyBERT's intermediate-layer distillation: embedding, hidden-state and attention MSE."""

    def __init__(self, student: nn.Module, teacher: nn.Module, layer_map: list[int],
                 weights: IntermediateWeights, proj: nn.Module | None = None):
        super().__init__(teacher)
        s_cfg, t_cfg = tfm.bert_of(student).config, tfm.bert_of(teacher).config
        if weights.attention and s_cfg.num_attention_heads != t_cfg.num_attention_heads:
            raise ConfigError(f"the attention loss compares heads one to one: the student has "
                              f"{s_cfg.num_attention_heads} heads, the teacher {t_cfg.num_attention_heads} "
                              "(set the student's heads to the teacher's, or the attention weight to 0)")
        self.student = student
        self.projection = proj if proj is not None else tfm.projection(s_cfg.hidden_size, t_cfg.hidden_size)
        self.layer_map = layer_map
        self.weights = weights.model_dump()

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = _model_inputs(batch)
        with torch.no_grad():
            _, t = tfm.forward_internals(self._teacher_on(inputs["input_ids"].device), inputs)
        _, s = tfm.forward_internals(self.student, inputs)
        terms = losses.tinybert_intermediate(s.hidden, s.all_scores(), t.hidden, t.all_scores(),
                                             inputs["attention_mask"], self.layer_map, self.projection,
                                             self.weights)
        return terms


class DistilBERTMLMDistiller(_WithTeacher):
    """DistilBERT's general objective on a corpus: MLM soft CE at T + MLM loss + cosine on last hidden."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, weights: dict[str, float],
                 mlm_probability: float, mask_id: int, special_ids: Sequence[int]):
        super().__init__(teacher)
        self.student = student
        s_w, t_w = student.config.hidden_size, teacher.config.hidden_size
        self.projection = tfm.projection(s_w, t_w)
        self.temperature, self.weights = temperature, weights
        self.mlm_probability, self.mask_id = mlm_probability, mask_id
        self.register_buffer("special_ids", torch.tensor(sorted(set(special_ids))), persistent=False)

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = _model_inputs(batch)
        ids = inputs["input_ids"]
        special = torch.isin(ids, self.special_ids.to(ids.device)) | (inputs["attention_mask"] == 0)
        # Global RNG (seeded by the stage, saved in Trainer checkpoints): a resumed run masks as an
        # uninterrupted one would.
        corrupted, mlm_labels = losses.mask_tokens(ids, special, self.mask_id, self.student.config.vocab_size,
                                                   self.mlm_probability)
        inputs = {**inputs, "input_ids": corrupted}
        with torch.no_grad():
            t_out = self._teacher_on(ids.device)(**inputs, output_hidden_states=True)
        s_out = self.student(**inputs, output_hidden_states=True)
        s_last = s_out.hidden_states[-1]
        if self.projection is not None:
            s_last = self.projection(s_last)
        return losses.distilbert_mlm(s_out.logits, t_out.logits, mlm_labels.to(ids.device), s_last,
                                     t_out.hidden_states[-1], inputs["attention_mask"], self.temperature,
                                     self.weights)


class PredictionDistiller(_Recipe):
    """TinyBERT step 2: soft CE at T between the student's logits and the cached teacher logits."""

    def __init__(self, student: nn.Module, temperature: float):
        super().__init__()
        self.student = student
        self.temperature = temperature

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        logits = self.student(**_model_inputs(batch)).logits
        if teacher_logits is None:  # evaluation batches carry gold labels only
            return {"loss": losses.hard_ce(logits, labels), "logits": logits}
        return {"loss": losses.soft_ce(logits, teacher_logits, self.temperature), "logits": logits}


class TaskDistiller(_WithTeacher):
    """DistilBERT's triple loss at task level; the fine-tuned teacher runs on the fly for its logits
    and last hidden states."""

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: DistilStudentConfig):
        super().__init__(teacher)
        self.student = student
        self.temperature = cfg.temperature
        self.weights = {"soft": cfg.soft_weight, "hard": cfg.hard_weight, "cosine": cfg.cosine_weight}

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = _model_inputs(batch)
        s_out = self.student(**inputs, output_hidden_states=True)
        if not self.training:
            return {"loss": losses.hard_ce(s_out.logits, labels), "logits": s_out.logits}
        with torch.no_grad():
            t_out = self._teacher_on(inputs["input_ids"].device)(**inputs, output_hidden_states=True)
        terms = losses.distil_task(s_out.logits, t_out.logits, labels, s_out.hidden_states[-1],
                                   t_out.hidden_states[-1], inputs["attention_mask"], self.temperature,
                                   self.weights)
        return {**terms, "logits": s_out.logits}


# ---------------------------------------------------------------- data
def token_collator(tokenizer):
    """Pad token fields per batch; carry labels and teacher logits as tensors."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        fields = [{k: r[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in r} for r in rows]
        batch = dict(tokenizer.pad(fields, return_tensors="pt"))
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.long)
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.tensor([r["teacher_logits"] for r in rows], dtype=torch.float32)
        return batch

    return collate


def encode_rows(tokenizer, split, task: Task, max_length: int, with_logits: bool = False):
    """A datasets.Dataset of token ids (+ labels, + teacher logits) for a prepared/teacher_logits split."""
    import datasets

    texts, pairs = texts_of(split, task.is_pair)
    rows = dict(tokenizer(texts, pairs, truncation=True, max_length=max_length))
    rows["labels"] = list(split["label"])
    rows["length"] = [len(ids) for ids in rows["input_ids"]]
    if with_logits:
        rows["teacher_logits"] = list(split["logits"])
    return datasets.Dataset.from_dict(rows)


def sample_rows(split, limit: int | None, seed: int):
    """A seeded random sample of `limit` rows (all rows when limit is None or larger)."""
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=seed).select(range(limit))


def task_rows(logits_dir: Path, augmented: bool, limit: int | None, seed: int):
    """Train rows (+ augmented rows) with their cached teacher logits, optionally subsampled."""
    rows = load_dataset_dir(logits_dir)
    if not augmented:
        rows = rows.filter(lambda origin: origin == "train", input_columns="origin")
    return sample_rows(rows, limit, seed)


def read_corpus(path: Path) -> list[str]:
    """Non-empty lines of a text file, or of every .txt/.raw file in a folder (sorted)."""
    files = sorted(f for f in path.rglob("*") if f.suffix in (".txt", ".raw")) if path.is_dir() else [path]
    if not path.exists():
        raise DataError(f"general_distill.corpus: {path} does not exist")
    if not files:
        raise DataError(f"general_distill.corpus: {path} has no .txt or .raw files")
    lines: list[str] = []
    for f in files:
        try:
            lines += [line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"{f}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise DataError(f"general_distill.corpus: {path} holds no text")
    return lines


def corpus_sequences(tokenizer, lines: Sequence[str], seq_length: int, limit: int | None, seed: int):
    """The corpus as [CLS] ... [SEP] blocks of seq_length tokens (lines concatenated, then cut)."""
    import datasets

    ids: list[int] = []
    for start in range(0, len(lines), 1000):
        for row in tokenizer(list(lines[start:start + 1000]), add_special_tokens=False, verbose=False)["input_ids"]:
            ids.extend(row)
    body = seq_length - 2
    blocks = [[tokenizer.cls_token_id, *ids[i:i + body], tokenizer.sep_token_id] for i in range(0, len(ids), body)]
    if limit is not None and limit < len(blocks):
        blocks = [blocks[i] for i in sorted(random.Random(seed).sample(range(len(blocks)), limit))]
    return datasets.Dataset.from_dict({"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks],
                                       "token_type_ids": [[0] * len(b) for b in blocks]}), len(ids)


# ---------------------------------------------------------------- stages
def _trainer(model: nn.Module, args, train, tokenizer, dev=None, task: Task | None = None):
    from transformers import Trainer

    return Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
                   data_collator=token_collator(tokenizer),
                   compute_metrics=metrics_fn(task) if task is not None else None)


def _save_student(student: nn.Module, tokenizer, folder: Path, proj: nn.Module | None = None) -> None:
    from safetensors.torch import save_file

    student.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if proj is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in proj.state_dict().items()},
                  str(folder / PROJECTION_FILE))


def _load_projection(folder: Path, proj: nn.Module | None) -> None:
    """Start the width projection from the one saved with a general_distill student, when shapes match."""
    from safetensors.torch import load_file

    f = folder / PROJECTION_FILE
    if proj is None:
        return
    if not f.is_file():
        log.warning("%s: no saved projection; step 1 starts its width projection from random weights", f)
        return
    state = load_file(str(f))
    expected = {k: tuple(v.shape) for k, v in proj.state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != expected:
        log.warning("%s: projection shapes differ from %s; starting it from random weights", f, expected)
        return
    proj.load_state_dict(state)


def _train_and_save(trainer, checkpoints: CheckpointDir, student: nn.Module, tokenizer, out_dir: Path,
                    history_path: Path, summary: dict[str, Any], task: Task | None = None,
                    proj: nn.Module | None = None) -> dict[str, Any]:
    """Train (resuming an interrupted run), evaluate on dev when `task` is given, save the student
    atomically with its tokenizer (and projection), write the log history; return the summary."""
    result = train_resumable(trainer, checkpoints)
    if task is not None:
        final = trainer.evaluate()
        summary.update({f"dev_{m}": round(final[f"eval_{m}"], 4) for m in task.metrics})
    with atomic_path(out_dir) as tmp:
        _save_student(student, tokenizer, tmp, proj)
    write_history(trainer, history_path)
    checkpoints.complete()
    summary.update(train_rows=len(trainer.train_dataset), train_seconds=round(result.metrics["train_runtime"], 1),
                   train_samples_per_second=round(result.metrics["train_samples_per_second"], 1))
    losses_logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if losses_logged:
        summary["final_train_loss"] = round(losses_logged[-1], 4)
    return summary


def general_distill(params: Params, out_dir: Path, history_path: Path, prepared_dir: Path,
                    checkpoint_dir: Path) -> dict[str, Any]:
    """TinyBERT stage 1 (or DistilBERT's objective): a small BERT learns the *pretrained* teacher on a
    general corpus. Saves the student (save_pretrained + tokenizer + width projection)."""
    from transformers import AutoModel, BertForMaskedLM, BertModel, set_seed

    cfg = params.general_distill
    key = "teacher.pretrained"
    source = resolve_pretrained(params.teacher.pretrained, key)
    tokenizer = load_tokenizer(params.teacher.pretrained, key)
    if cfg.objective == "distilbert":
        teacher = tfm.load_mlm_teacher(source, key)
    else:
        try:
            teacher = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{key}: cannot load a model from {source!r}: {exc}") from None
    t_cfg = tfm.bert_of(teacher).config
    shape = cfg.student
    s_config = tfm.student_config(t_cfg, shape)
    lines = read_corpus(Path(cfg.corpus))
    if cfg.task_text:
        task = get_task(params.data.task)
        texts, pairs = texts_of(load_dataset_dir(prepared_dir)["train"], task.is_pair)
        lines += texts + (pairs or [])
    train, n_tokens = corpus_sequences(tokenizer, lines, min(cfg.seq_length, t_cfg.max_position_embeddings),
                                       cfg.max_sequences, params.seed)
    set_seed(params.seed)
    layer_map = resolve_layer_map(cfg.layer_map, shape.layers, t_cfg.num_hidden_layers, "general_distill.layer_map")
    if cfg.objective == "distilbert":
        student = BertForMaskedLM(s_config)
        recipe = DistilBERTMLMDistiller(student, teacher, cfg.temperature, cfg.distilbert.model_dump(),
                                        cfg.mlm_probability, tokenizer.mask_token_id, tokenizer.all_special_ids)
    else:
        student = BertModel(s_config, add_pooling_layer=False)
        recipe = IntermediateDistiller(student, teacher, layer_map, cfg.weights)
    if cfg.init == "teacher_slice":
        kept = tfm.slice_from_teacher(student, teacher, layer_map)
        if recipe.projection is not None:
            tfm.scatter_projection(recipe.projection, kept)
    inputs = [Path(cfg.corpus)] + ([prepared_dir] if cfg.task_text else [])
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.teacher.pretrained, params.data.task, cfg.model_dump()], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, warmup=cfg.warmup_ratio,
                              checkpoint_steps=params.checkpoint_steps, evaluate=False, group_by_length=False)
    trainer = _trainer(recipe, args, train, tokenizer)
    log.info("general distillation (%s): %d sequences of <= %d tokens (%d corpus tokens), student %s",
             cfg.objective, len(train), cfg.seq_length, n_tokens, shape.model_dump())
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "objective": cfg.objective, "teacher": params.teacher.pretrained, "sequences": len(train),
        "corpus_tokens": n_tokens, "student_parameters": sum(p.numel() for p in student.parameters()),
        "init": cfg.init, "layer_map": layer_map,
    }, proj=recipe.projection)


def _tinybert_cfg(params: Params, name: str) -> TinyBERTStudentConfig:
    if name not in params.tinybert:
        raise ConfigError(f"tinybert.{name}: no such TinyBERT student in params (have: {', '.join(params.tinybert)})")
    return params.tinybert[name]


def _task_student(params: Params, task: Task, cfg: TinyBERTStudentConfig, general_dir: Path, t_cfg):
    """The step-1 student: the general_distill student with a classification head, or random weights
    of the same shape (the no-general-distillation ablation)."""
    from transformers import BertForSequenceClassification

    labels = dict(num_labels=task.num_labels, id2label=dict(enumerate(task.labels)),
                  label2id={n: i for i, n in enumerate(task.labels)})
    if cfg.init == "random":
        config = tfm.student_config(t_cfg, params.general_distill.student)
        for k, v in labels.items():
            setattr(config, k, v)
        return BertForSequenceClassification(config)
    if not (general_dir / "config.json").is_file():
        raise ModelError(f"{general_dir}: no general_distill student (run `dvc repro general_distill`)")
    return BertForSequenceClassification.from_pretrained(str(general_dir), **labels)


def tinybert_intermediate(name: str, params: Params, out_dir: Path, history_path: Path, general_dir: Path,
                          teacher_dir: Path, logits_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """TinyBERT task step 1: intermediate-layer distillation from the fine-tuned teacher (run on the
    fly) on train (+ augmented) rows. Saves the student with its projection for step 2."""
    from transformers import set_seed

    cfg = _tinybert_cfg(params, name)
    step = cfg.intermediate
    task = get_task(params.data.task)
    teacher = load_classifier(str(teacher_dir), key=TEACHER_KEY)
    tokenizer = load_tokenizer(str(teacher_dir), key=TEACHER_KEY)
    set_seed(params.seed)
    student = _task_student(params, task, cfg, general_dir, teacher.config)
    layer_map = resolve_layer_map(step.layer_map, student.config.num_hidden_layers,
                                  teacher.config.num_hidden_layers, f"tinybert.{name}.intermediate.layer_map")
    recipe = IntermediateDistiller(student, teacher, layer_map, step.weights)
    if cfg.init == "general_distill":
        _load_projection(general_dir, recipe.projection)
    rows = task_rows(logits_dir, cfg.augmented, step.max_rows, params.seed)
    train = encode_rows(tokenizer, rows, task, params.data.max_length)
    inputs = [teacher_dir, logits_dir] + ([general_dir] if cfg.init == "general_distill" else [])
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, params.general_distill.student.model_dump(),
         cfg.init, cfg.augmented, step.model_dump()], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=step.epochs, learning_rate=step.learning_rate,
                              batch_size=step.batch_size, seed=params.seed, warmup=0.1,
                              checkpoint_steps=params.checkpoint_steps, evaluate=False)
    trainer = _trainer(recipe, args, train, tokenizer)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "step": "intermediate", "init": cfg.init, "augmented": cfg.augmented,
        "layer_map": layer_map}, proj=recipe.projection)


def tinybert_prediction(name: str, params: Params, out_dir: Path, history_path: Path, intermediate_dir: Path,
                        prepared_dir: Path, logits_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """TinyBERT task step 2: prediction-layer distillation (soft CE at T on the cached teacher logits),
    starting from the step-1 student. Saves a Hugging Face classifier folder."""
    from transformers import BertForSequenceClassification, set_seed

    cfg = _tinybert_cfg(params, name)
    step = cfg.prediction
    task = get_task(params.data.task)
    if not (intermediate_dir / "config.json").is_file():
        raise ModelError(f"{intermediate_dir}: no step-1 student (run `dvc repro tinybert_intermediate@{name}`)")
    tokenizer = load_tokenizer(str(intermediate_dir), key=str(intermediate_dir))
    set_seed(params.seed)
    student = BertForSequenceClassification.from_pretrained(str(intermediate_dir))
    rows = task_rows(logits_dir, cfg.augmented, step.max_rows, params.seed)
    train = encode_rows(tokenizer, rows, task, params.data.max_length, with_logits=True)
    dev = encode_rows(tokenizer, load_dataset_dir(prepared_dir)["dev"], task, params.data.max_length)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, cfg.augmented, step.model_dump()],
        [intermediate_dir, logits_dir, prepared_dir]))
    args = training_arguments(str(checkpoints.folder), epochs=step.epochs, learning_rate=step.learning_rate,
                              batch_size=step.batch_size, seed=params.seed, warmup=0.1,
                              checkpoint_steps=params.checkpoint_steps)
    trainer = _trainer(PredictionDistiller(student, step.temperature), args, train, tokenizer, dev, task)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "arch": "tinybert", "step": "prediction", "init": cfg.init,
        "augmented": cfg.augmented}, task=task)


def train_distil_student(name: str, params: Params, out_dir: Path, history_path: Path, teacher_dir: Path,
                         prepared_dir: Path, logits_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """DistilBERT-style task student: the fine-tuned teacher's embeddings and chosen layers (every other
    one by default) copied into a shallower BERT, trained with soft CE + hard CE + hidden cosine."""
    from transformers import BertForSequenceClassification, set_seed

    if name not in params.distil:
        raise ConfigError(f"distil.{name}: no such student in params (have: {', '.join(params.distil)})")
    cfg: DistilStudentConfig = params.distil[name]
    task = get_task(params.data.task)
    teacher = load_classifier(str(teacher_dir), key=TEACHER_KEY)
    tokenizer = load_tokenizer(str(teacher_dir), key=TEACHER_KEY)
    n_teacher = teacher.config.num_hidden_layers
    layers = list(cfg.layers) if cfg.layers is not None else tfm.alternate_layers(n_teacher, max(n_teacher // 2, 1))
    bad = [i for i in layers if i >= n_teacher]
    if bad or not layers:
        raise ConfigError(f"distil.{name}.layers: teacher layers are 0..{n_teacher - 1}, got {layers}")
    config = teacher.config.__class__.from_dict({**teacher.config.to_dict(), "num_hidden_layers": len(layers)})
    set_seed(params.seed)
    student = BertForSequenceClassification(config)
    tfm.init_from_teacher(student, teacher, layers)
    if cfg.train_on == "teacher_logits":
        rows = task_rows(logits_dir, True, cfg.max_rows, params.seed)
    else:
        rows = sample_rows(load_dataset_dir(prepared_dir)["train"], cfg.max_rows, params.seed)
    train = encode_rows(tokenizer, rows, task, params.data.max_length)
    dev = encode_rows(tokenizer, load_dataset_dir(prepared_dir)["dev"], task, params.data.max_length)
    inputs = [teacher_dir, prepared_dir] + ([logits_dir] if cfg.train_on == "teacher_logits" else [])
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, cfg.model_dump()], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, warmup=cfg.warmup_ratio,
                              checkpoint_steps=params.checkpoint_steps)
    trainer = _trainer(TaskDistiller(student, teacher, cfg), args, train, tokenizer, dev, task)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "arch": "distil", "train_on": cfg.train_on, "teacher_layers": layers}, task=task)
