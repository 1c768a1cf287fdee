"""Transformer students: general distillation (TinyBERT, MiniLMv2, DistilBERT objectives), two-step task
distillation (TinyBERT, MiniLMv2, LRC-BERT), DistilBERT-style students.

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
from pipeline.config import CosNCEConfig, DistilStudentConfig, IntermediateWeights, Params, TwoStepConfig
from pipeline.data import atomic_path, load_dataset_dir, texts_of
from pipeline.errors import ConfigError, DataError, ModelError
from pipeline.inference import use_bf16
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


class RelationDistiller(_WithTeacher):
    """MiniLMv2 (Wang et al. 2021, arXiv 2012.15828): the student's last layer learns the query-query,
    key-key and value-value self-attention relations of one teacher layer, both split into the same
    number of relation heads, so head counts and widths may differ (no projection is needed). The paper
    distils the last layer of base-size teachers and an upper-middle one of large teachers."""

    def __init__(self, student: nn.Module, teacher: nn.Module, relation_heads: int, teacher_layer: int | None,
                 key: str):
        super().__init__(teacher)
        s_cfg, t_cfg = tfm.bert_of(student).config, tfm.bert_of(teacher).config
        widths = {"student": s_cfg.hidden_size, "teacher": t_cfg.hidden_size}
        bad = [f"{who} width {w}" for who, w in widths.items() if w % relation_heads]
        if bad:
            raise ConfigError(f"{key}.relation_heads: {relation_heads} does not divide the {' and '.join(bad)}")
        layer = teacher_layer if teacher_layer is not None else t_cfg.num_hidden_layers
        if not 1 <= layer <= t_cfg.num_hidden_layers:
            raise ConfigError(f"{key}.teacher_layer: the teacher's layers are 1..{t_cfg.num_hidden_layers}, got {layer}")
        self.student, self.heads, self.teacher_layer = student, relation_heads, layer

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = _model_inputs(batch)
        with torch.no_grad():
            _, t = tfm.forward_internals(self._teacher_on(inputs["input_ids"].device), inputs)
        _, s = tfm.forward_internals(self.student, inputs)
        return losses.minilm_relations(s.vectors(-1), t.vectors(self.teacher_layer - 1), inputs["attention_mask"],
                                       self.heads)


class ContrastiveDistiller(_WithTeacher):
    """LRC-BERT (Fu et al. 2021, arXiv 2012.07335): COS-NCE between each mapped student layer's output
    (through its own learned linear map to the teacher width) and the teacher's, with negatives from the
    batch or a memory bank; optionally the prediction-layer terms (soft CE at T on the cached teacher
    logits + hard CE on gold labels), and gradient perturbation of the embedding output.

    Stage 1 of the paper's two-stage training is COS-NCE alone (`weights` = {"cos_nce": 1}); stage 2
    adds the prediction terms. With `epsilon` > 0 every training step runs the student twice: a clean
    pass gives the gradient of the loss with respect to the embedding-layer output, and the step trains
    on a second pass whose embedding output is moved by epsilon along that normalised gradient.
    The paper reports a 4-layer, 312-wide student (14.5M parameters) 7.5x smaller and 9.6x faster than
    BERT-base that keeps about 97.4% of its average GLUE score."""

    def __init__(self, student: nn.Module, teacher: nn.Module, layer_map: list[int], cos: CosNCEConfig,
                 epsilon: float, weights: dict[str, float], temperature: float = 1.0, max_length: int = 128):
        super().__init__(teacher)
        s_w, t_w = tfm.bert_of(student).config.hidden_size, tfm.bert_of(teacher).config.hidden_size
        self.student, self.layer_map, self.cos = student, layer_map, cos
        self.epsilon, self.weights, self.temperature = epsilon, weights, temperature
        self.projection = nn.ModuleList(nn.Linear(s_w, t_w) for _ in layer_map)
        if s_w == t_w:
            for proj in self.projection:
                nn.init.eye_(proj.weight)
                nn.init.zeros_(proj.bias)
        self.bank_length, self.bank_filled = max_length, 0
        if cos.negatives == "memory_bank":  # teacher representations of earlier batches (not checkpointed)
            self.register_buffer("bank", torch.zeros(len(layer_map), cos.k, max_length * t_w), persistent=False)

    def _contrast_set(self, teacher, mask: torch.Tensor):
        """The teacher's representations of the batch (positives) per mapped layer, the pools negatives
        come from, their (batch, K) indices, and the length representations are padded to (the memory
        bank's fixed one; zero padding leaves every cosine unchanged)."""
        length = self.bank_length if self.cos.negatives == "memory_bank" else None
        positives = [losses.flat_states(teacher.hidden_states[t], mask, length) for t in self.layer_map]
        b = mask.shape[0]
        if length is None or self.bank_filled == 0:  # in-batch negatives (and an empty bank's first batch)
            return positives, positives, losses.in_batch_negatives(b, self.cos.k).to(mask.device), length
        pools = [bank[:self.bank_filled] for bank in self.bank]
        return positives, pools, torch.arange(self.bank_filled, device=mask.device).expand(b, -1), length

    def _enqueue(self, positives: list[torch.Tensor]) -> None:
        n = min(positives[0].shape[0], self.cos.k)
        for layer, rep in enumerate(positives):  # newest first; the oldest fall off the end
            self.bank[layer] = torch.cat([rep[:n].detach(), self.bank[layer][:-n]])
        self.bank_filled = min(self.bank_filled + n, self.cos.k)

    def _terms(self, inputs, contrast, labels, teacher_logits, offset=None):
        mask = inputs["attention_mask"]
        positives, pools, index, length = contrast
        with tfm.embedding_output(self.student, offset) as seen:
            out = self.student(**inputs, output_hidden_states=True)
        cos = sum(losses.cos_nce(losses.flat_states(proj(out.hidden_states[m]), mask, length), pos, pool, index,
                                 self.cos.temperature)
                  for m, (proj, pos, pool) in enumerate(zip(self.projection, positives, pools, strict=True), start=1))
        terms = {"cos_nce": self.weights["cos_nce"] * cos / len(self.layer_map)}
        if self.weights.get("soft"):
            terms["soft"] = self.weights["soft"] * losses.soft_ce(out.logits, teacher_logits, self.temperature)
        if self.weights.get("hard"):
            terms["hard"] = self.weights["hard"] * losses.hard_ce(out.logits, labels)
        terms["loss"] = sum(terms.values())
        return terms, seen[0], out.logits

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = _model_inputs(batch)
        if not self.training:  # evaluation batches: gold labels only
            logits = self.student(**inputs).logits
            return {"loss": losses.hard_ce(logits, labels), "logits": logits}
        with torch.no_grad():
            teacher = self._teacher_on(inputs["input_ids"].device)(**inputs, output_hidden_states=True)
        contrast = self._contrast_set(teacher, inputs["attention_mask"])
        terms, embedded, logits = self._terms(inputs, contrast, labels, teacher_logits)
        if self.epsilon:  # train on the perturbed pass; the clean one only gives the gradient direction
            grad, = torch.autograd.grad(terms["loss"], embedded)
            offset = losses.perturbation(grad, inputs["attention_mask"], self.epsilon)
            terms, _, logits = self._terms(inputs, contrast, labels, teacher_logits, offset)
        if self.cos.negatives == "memory_bank":
            self._enqueue(contrast[0])
        return {**terms, "logits": logits}


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
    """Start the width projection(s) from the one saved with an earlier student (general_distill or
    step 1) when shapes match. A single saved map seeds every per-layer map of a ModuleList."""
    from safetensors.torch import load_file

    f = folder / PROJECTION_FILE
    if proj is None:
        return
    if not f.is_file():
        log.warning("%s: no saved projection; the width projection starts from its initialisation", f)
        return
    state = load_file(str(f))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes == {k: tuple(v.shape) for k, v in proj.state_dict().items()}:
        proj.load_state_dict(state)
    elif isinstance(proj, nn.ModuleList) and all(
            shapes == {k: tuple(v.shape) for k, v in part.state_dict().items()} for part in proj):
        for part in proj:
            part.load_state_dict(state)
    else:
        log.warning("%s: projection shapes %s do not fit; it starts from its initialisation", f, shapes)


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
    summary.update(precision="bf16" if trainer.args.bf16 else "fp32",
                   train_rows=len(trainer.train_dataset), train_seconds=round(result.metrics["train_runtime"], 1),
                   train_samples_per_second=round(result.metrics["train_samples_per_second"], 1))
    losses_logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if losses_logged:
        summary["final_train_loss"] = round(losses_logged[-1], 4)
    return summary


def general_distill(objective: str, params: Params, out_dir: Path, history_path: Path, prepared_dir: Path,
                    checkpoint_dir: Path) -> dict[str, Any]:
    """General distillation with one objective of `general_distill.objectives`: a small BERT learns the
    *pretrained* teacher on a general corpus (TinyBERT's stage 1, MiniLMv2's relations, or DistilBERT's
    MLM objective). Saves the student (save_pretrained + tokenizer + width projection when it has one)."""
    from transformers import AutoModel, BertForMaskedLM, BertModel, set_seed

    cfg = params.general_distill
    if objective not in cfg.objectives:
        raise ConfigError(f"general_distill.objectives: {objective!r} is not listed (have: {', '.join(cfg.objectives)})")
    key = "teacher.pretrained"
    source = resolve_pretrained(params.teacher.pretrained, key)
    tokenizer = load_tokenizer(params.teacher.pretrained, key)
    if objective == "distilbert":
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
    if objective == "distilbert":
        student = BertForMaskedLM(s_config)
        d = cfg.distilbert
        recipe = DistilBERTMLMDistiller(student, teacher, d.temperature, {"soft": d.soft, "mlm": d.mlm, "cosine": d.cosine},
                                        d.mlm_probability, tokenizer.mask_token_id, tokenizer.all_special_ids)
    elif objective == "minilmv2":
        student = BertModel(s_config, add_pooling_layer=False)
        recipe = RelationDistiller(student, teacher, cfg.minilmv2.relation_heads, cfg.minilmv2.teacher_layer,
                                   "general_distill.minilmv2")
    else:
        student = BertModel(s_config, add_pooling_layer=False)
        recipe = IntermediateDistiller(student, teacher, layer_map, cfg.tinybert)
    proj = getattr(recipe, "projection", None)
    if cfg.init == "teacher_slice":
        kept = tfm.slice_from_teacher(student, teacher, layer_map)
        if proj is not None:
            tfm.scatter_projection(proj, kept)
    inputs = [Path(cfg.corpus)] + ([prepared_dir] if cfg.task_text else [])
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.teacher.pretrained, params.data.task, objective, cfg.settings(objective), bf16], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, warmup=cfg.warmup_ratio,
                              checkpoint_steps=params.checkpoint_steps, evaluate=False, group_by_length=False,
                              bf16=bf16)
    trainer = _trainer(recipe, args, train, tokenizer)
    log.info("general distillation (%s): %d sequences of <= %d tokens (%d corpus tokens), student %s",
             objective, len(train), cfg.seq_length, n_tokens, shape.model_dump())
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "objective": objective, "teacher": params.teacher.pretrained, "sequences": len(train),
        "corpus_tokens": n_tokens, "student_parameters": sum(p.numel() for p in student.parameters()),
        "init": cfg.init, "layer_map": layer_map,
    }, proj=proj)


def _twostep_cfg(params: Params, name: str) -> TwoStepConfig:
    if name not in params.twostep:
        raise ConfigError(f"twostep.{name}: no such student in params (have: {', '.join(params.twostep)})")
    return params.twostep[name]


def _task_student(params: Params, task: Task, cfg: TwoStepConfig, general_dir: Path, t_cfg):
    """The step-1 student: a general_distill student (the one of `cfg.init`) with a classification head,
    or random weights of the same shape (the no-general-distillation ablation)."""
    from transformers import BertForSequenceClassification

    labels = dict(num_labels=task.num_labels, id2label=dict(enumerate(task.labels)),
                  label2id={n: i for i, n in enumerate(task.labels)})
    if cfg.init == "random":
        config = tfm.student_config(t_cfg, params.general_distill.student)
        for k, v in labels.items():
            setattr(config, k, v)
        return BertForSequenceClassification(config)
    folder = general_dir / cfg.init
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: no general_distill student (run `dvc repro general_distill@{cfg.init}`)")
    return BertForSequenceClassification.from_pretrained(str(folder), **labels)


def _layer_map(step_map, student, teacher, key: str) -> list[int]:
    return resolve_layer_map(step_map, student.config.num_hidden_layers, teacher.config.num_hidden_layers, key)


def _step1_recipe(name: str, cfg: TwoStepConfig, student, teacher, max_length: int) -> tuple[_WithTeacher, dict]:
    """The step-1 training wrapper of a two-step student's method, and what its summary records."""
    step, key = cfg.intermediate, f"twostep.{name}.intermediate"
    if cfg.method == "minilmv2":
        recipe = RelationDistiller(student, teacher, step.relation_heads, step.teacher_layer, key)
        return recipe, {"teacher_layer": recipe.teacher_layer, "relation_heads": step.relation_heads}
    if cfg.method == "lrc":
        layer_map = _layer_map(step.cos_nce.layer_map, student, teacher, f"{key}.cos_nce.layer_map")
        return ContrastiveDistiller(student, teacher, layer_map, step.cos_nce, step.epsilon, {"cos_nce": 1.0},
                                    max_length=max_length), {"layer_map": layer_map}
    layer_map = _layer_map(step.layer_map, student, teacher, f"{key}.layer_map")
    return IntermediateDistiller(student, teacher, layer_map, step.weights), {"layer_map": layer_map}


def intermediate_step(name: str, params: Params, out_dir: Path, history_path: Path, general_dir: Path,
                      teacher_dir: Path, logits_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """Two-step task distillation, step 1: the intermediate layers learn the fine-tuned teacher (run on
    the fly) on train (+ augmented) rows with the student's method (TinyBERT: embedding, hidden and
    attention MSE; MiniLMv2: Q/K/V relations; LRC-BERT stage 1: COS-NCE). Saves the student with its
    projection for step 2."""
    from transformers import set_seed

    cfg = _twostep_cfg(params, name)
    step = cfg.intermediate
    task = get_task(params.data.task)
    teacher = load_classifier(str(teacher_dir), key=TEACHER_KEY)
    tokenizer = load_tokenizer(str(teacher_dir), key=TEACHER_KEY)
    set_seed(params.seed)
    student = _task_student(params, task, cfg, general_dir, teacher.config)
    recipe, details = _step1_recipe(name, cfg, student, teacher, params.data.max_length)
    proj = getattr(recipe, "projection", None)
    if cfg.init != "random":
        _load_projection(general_dir / cfg.init, proj)
    rows = task_rows(logits_dir, cfg.augmented, step.max_rows, params.seed)
    train = encode_rows(tokenizer, rows, task, params.data.max_length)
    inputs = [teacher_dir, logits_dir] + ([general_dir / cfg.init] if cfg.init != "random" else [])
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, params.general_distill.student.model_dump(),
         cfg.method, cfg.init, cfg.augmented, step.model_dump(), bf16], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=step.epochs, learning_rate=step.learning_rate,
                              batch_size=step.batch_size, seed=params.seed, warmup=0.1,
                              checkpoint_steps=params.checkpoint_steps, evaluate=False, bf16=bf16)
    trainer = _trainer(recipe, args, train, tokenizer)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "method": cfg.method, "step": "intermediate", "init": cfg.init,
        "augmented": cfg.augmented, **details}, proj=proj)


def prediction_step(name: str, params: Params, out_dir: Path, history_path: Path, intermediate_dir: Path,
                    prepared_dir: Path, logits_dir: Path, teacher_dir: Path, checkpoint_dir: Path) -> dict[str, Any]:
    """Two-step task distillation, step 2, from the step-1 student: soft CE at T on the cached teacher
    logits (TinyBERT, MiniLMv2), or LRC-BERT's stage 2 (soft CE + hard CE + COS-NCE against the
    fine-tuned teacher run on the fly, with gradient perturbation). Saves a Hugging Face classifier."""
    from transformers import BertForSequenceClassification, set_seed

    cfg = _twostep_cfg(params, name)
    step = cfg.prediction
    task = get_task(params.data.task)
    if not (intermediate_dir / "config.json").is_file():
        raise ModelError(f"{intermediate_dir}: no step-1 student (run `dvc repro intermediate@{name}`)")
    tokenizer = load_tokenizer(str(intermediate_dir), key=str(intermediate_dir))
    set_seed(params.seed)
    student = BertForSequenceClassification.from_pretrained(str(intermediate_dir))
    inputs = [intermediate_dir, logits_dir, prepared_dir]
    details: dict[str, Any] = {}
    if cfg.method == "lrc":
        teacher = load_classifier(str(teacher_dir), key=TEACHER_KEY)
        layer_map = _layer_map(step.cos_nce.layer_map, student, teacher, f"twostep.{name}.prediction.cos_nce.layer_map")
        recipe = ContrastiveDistiller(student, teacher, layer_map, step.cos_nce, step.epsilon,
                                      step.weights.model_dump(), step.temperature, params.data.max_length)
        _load_projection(intermediate_dir, recipe.projection)
        inputs.append(teacher_dir)
        details["layer_map"] = layer_map
    else:
        recipe = PredictionDistiller(student, step.temperature)
    rows = task_rows(logits_dir, cfg.augmented, step.max_rows, params.seed)
    train = encode_rows(tokenizer, rows, task, params.data.max_length, with_logits=True)
    dev = encode_rows(tokenizer, load_dataset_dir(prepared_dir)["dev"], task, params.data.max_length)
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, cfg.method, cfg.augmented, step.model_dump(), bf16],
        inputs))
    args = training_arguments(str(checkpoints.folder), epochs=step.epochs, learning_rate=step.learning_rate,
                              batch_size=step.batch_size, seed=params.seed, warmup=0.1,
                              checkpoint_steps=params.checkpoint_steps, bf16=bf16)
    trainer = _trainer(recipe, args, train, tokenizer, dev, task)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "method": cfg.method, "step": "prediction", "init": cfg.init,
        "augmented": cfg.augmented, **details}, task=task)


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
    bf16 = use_bf16(params.precision)
    checkpoints = CheckpointDir(checkpoint_dir, fingerprint(
        [params.seed, params.data.task, params.data.max_length, cfg.model_dump(), bf16], inputs))
    args = training_arguments(str(checkpoints.folder), epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                              batch_size=cfg.batch_size, seed=params.seed, warmup=cfg.warmup_ratio,
                              checkpoint_steps=params.checkpoint_steps, bf16=bf16)
    trainer = _trainer(TaskDistiller(student, teacher, cfg), args, train, tokenizer, dev, task)
    return _train_and_save(trainer, checkpoints, student, tokenizer, out_dir, history_path, {
        "student": name, "arch": "distil", "train_on": cfg.train_on, "teacher_layers": layers}, task=task)
