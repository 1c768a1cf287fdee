"""DistilBERT (Sanh et al. 2019, arXiv 1910.01108). At task level: a student initialised from the
fine-tuned teacher's embeddings and chosen layers (by default every other one, ending with the top one), trained with the
triple loss: soft CE at T on the teacher's logits + hard CE on gold labels + cosine between the last
hidden states, the teacher run on the fly. As a general-distillation objective: the same triple loss
on a general corpus with the masked-LM head (soft CE between MLM distributions on the masked positions,
the MLM loss, cosine), which needs a teacher pretrained with an MLM head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from pipeline.artifacts import PREPARED, TEACHER, TEACHER_LOGITS, UNLABELLED, load_dataset_dir
from pipeline.data.batches import encode_rows, model_inputs, row_origins, sample_rows, task_rows, token_collator
from pipeline.errors import ConfigError, ModelError
from pipeline.methods import Method, Objective, Step, StepRun
from pipeline.methods.recipes import WithTeacher, evaluation
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import (PRETRAINED_PREFIX, load_classifier, load_teacher, load_tokenizer, local_model_type,
                                pretrained_spec, same_tokenizer)
from pipeline.params.schema import (MIN_TASK_STEPS, AugmentedRows, Budget, LearningRate, MinSteps, Positive,
                                    Probability, Section, augmentation_field, augmented_rows_field, check_train_on,
                                    unlabelled_field, weights, weights_field)
from pipeline.tasks import prepared_task
from pipeline.training import driver as training
from pipeline.training import losses

Weights = weights("DistilBERTWeights", soft=(1.0, "soft CE at T on the teacher's logits (x T^2)"),
                  hard=(1.0, "CE on gold labels"), cosine=(1.0, "cosine loss between the last hidden states"))
MLMWeights = weights("DistilBERTMLMWeights", soft=(5.0, "soft CE between MLM distributions at T (x T^2)"),
                     mlm=(2.0, "masked-LM loss"), cosine=(1.0, "cosine loss between the last hidden states"))


TEACHER_LAYERS = "teacher_layers"


class DistilBERTStudent(Budget):
    init: str = Field(
        TEACHER_LAYERS, description=f"{TEACHER_LAYERS}: the fine-tuned teacher's `layers` copied into a student of "
                                    f"its family and width; or {PRETRAINED_PREFIX}<Hub id | folder | package:NAME>, a "
                                    "small pretrained model of any supported family (with another tokenizer than "
                                    "the teacher's: train_on: teacher_logits and weights.cosine: 0)")
    train_on: Literal["prepared", "teacher_logits"] = Field(
        "prepared", description="prepared: the gold-labelled train split; teacher_logits: train (+ augmented) rows")
    augmentation: str | None = augmentation_field(None)
    augmented_rows: AugmentedRows = augmented_rows_field()
    unlabelled: bool = unlabelled_field()
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="0-based fine-tuned teacher layers copied into the student (null: half of them, evenly "
                          "spaced, the top one included: 6 layers -> [1, 3, 5])")
    temperature: Positive = Field(2.0, description="softmax temperature of the soft-label term")
    weights: Weights = weights_field(Weights)
    min_steps: MinSteps = MIN_TASK_STEPS
    learning_rate: LearningRate = 5e-5

    @model_validator(mode="after")
    def _rows(self) -> DistilBERTStudent:
        check_train_on(self.train_on, self.augmentation)
        if self.init != TEACHER_LAYERS and not pretrained_spec(self.init):
            raise ValueError(f"init: {TEACHER_LAYERS} or {PRETRAINED_PREFIX}<Hub id | folder | package:NAME> (got "
                             f"{self.init!r})")
        if pretrained_spec(self.init) and self.layers is not None:
            raise ValueError(f"layers: the teacher layers a student copies; a student with init {self.init} starts "
                             "from its own (remove layers)")
        return self


def check_student(name: str, cfg: DistilBERTStudent, params) -> None:
    """A pretrained student must be of a supported family; with a tokenizer of its own it can only learn per
    text: the teacher's cached logits (train_on: teacher_logits), no hidden-state cosine."""
    spec = pretrained_spec(cfg.init)
    if spec is None:
        return
    try:
        local_model_type(spec, f"distilbert.{name}.init")
        same = same_tokenizer(spec, params.teacher.pretrained, local_only=True)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    if same is False:
        check_per_text(name, cfg)


def check_per_text(name: str, cfg: DistilBERTStudent) -> None:
    why = (f"distilbert.{name}.init: {cfg.init} has a tokenizer of its own (not teacher.pretrained's), so the "
           "teacher cannot read its token ids:")
    if cfg.train_on != "teacher_logits":
        raise ValueError(f"{why} set distilbert.{name}.train_on: teacher_logits (the teacher's outputs cached per "
                         "text)")
    if cfg.weights.cosine:
        raise ValueError(f"{why} set distilbert.{name}.weights.cosine: 0 (it compares hidden states token by token)")


class TaskRecipe(WithTeacher):
    """The triple loss at task level; the fine-tuned teacher runs on the fly for its logits and last
    hidden states, unless the batch brings its cached logits and no hidden state is compared. A student
    narrower than the teacher (a pretrained one) reaches the teacher's width for the cosine through a
    learned projection."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, temperature: float,
                 weights: dict[str, float]):
        super().__init__(teacher, weights)
        self.student = student
        self.temperature = temperature
        self.projection = tfm.projection(encoders.dims(student).hidden, encoders.dims(teacher).hidden)

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        s_out = self.student(**inputs, output_hidden_states=True)
        if not self.training:
            return evaluation(s_out.logits, labels)
        t_out = self.run_teacher(inputs, output_hidden_states=True) \
            if self.active("cosine") or teacher_logits is None else None
        t_logits = teacher_logits if t_out is None else t_out.logits
        logits = s_out.logits.float()  # one fp32 copy feeds every term, so their gradients add up in fp32
        terms = {}
        if self.active("soft"):
            terms["soft"] = losses.soft_loss(logits, t_logits, self.temperature)
        if self.active("hard"):
            terms["hard"] = losses.hard_loss(logits, labels)
        if self.active("cosine"):
            last = s_out.hidden_states[-1]
            terms["cosine"] = losses.cosine_hidden(last if self.projection is None else self.projection(last),
                                                   t_out.hidden_states[-1], inputs["attention_mask"])
        return self.output(terms, s_out.logits)


def default_layers(teacher_layers: int) -> list[int]:
    """Half the teacher's layers (0-based), evenly spaced and ending with the top one, whose output the
    copied pooler and classifier were trained on (DistilBERT takes every other layer of BERT-base)."""
    return [t - 1 for t in tfm.uniform_layer_map(max(teacher_layers // 2, 1), teacher_layers)]


def train(run: StepRun) -> dict:
    from datasets import concatenate_datasets
    from transformers import set_seed

    params, cfg = run.params, run.cfg
    task = prepared_task()
    teacher, tokenizer = load_teacher()
    spec, key = pretrained_spec(cfg.init), f"distilbert.{run.name}.init"
    if spec is not None:  # a pretrained student of its own, with its own tokenizer
        if not same_tokenizer(spec, str(TEACHER)):
            try:
                check_per_text(run.name, cfg)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        tokenizer, layers = load_tokenizer(spec, key=key), None
        set_seed(params.seed)
        student = load_classifier(spec, task, key=key)
        encoders.family(student, key=key)
    else:
        n_teacher = encoders.dims(teacher).layers
        layers = list(cfg.layers) if cfg.layers is not None else default_layers(n_teacher)
        bad = [i for i in layers if i >= n_teacher]
        if bad or not layers:
            raise ConfigError(f"distilbert.{run.name}.layers: teacher layers are 0..{n_teacher - 1}, got {layers}")
        set_seed(params.seed)
        student = type(teacher)(tfm.fewer_layers_config(teacher.config, layers))  # the teacher's family and width
        tfm.init_from_teacher(student, teacher, layers)
    prepared = load_dataset_dir(PREPARED)
    if cfg.train_on == "teacher_logits":
        rows = task_rows(TEACHER_LOGITS, cfg.augmentation, cfg.max_rows, params.seed, cfg.augmented_rows,
                         cfg.unlabelled)
        origins = row_origins(rows)
    else:  # the teacher runs on the fly: its soft targets reach the unlabelled rows too
        rows = sample_rows(prepared["train"], cfg.max_rows, params.seed)
        origins = row_origins(rows)
        if cfg.unlabelled and UNLABELLED in prepared and (cfg.max_rows is None or cfg.max_rows > len(rows)):
            more = sample_rows(prepared[UNLABELLED], None if cfg.max_rows is None else cfg.max_rows - len(rows),
                               params.seed)
            rows, origins = concatenate_datasets([rows, more]), {**origins, UNLABELLED: len(more)}
    return training.run(training.Job(
        model=TaskRecipe(student, teacher, cfg.temperature, cfg.weights.active()),
        train=encode_rows(tokenizer, rows, task, params.data.max_length, with_logits=cfg.train_on == "teacher_logits"),
        dev=encode_rows(tokenizer, prepared["dev"], task, params.data.max_length), task=task,
        collate=token_collator(tokenizer), budget=cfg,
        fingerprint=run.declared,
        inputs=[TEACHER, PREPARED] + ([TEACHER_LOGITS] if cfg.train_on == "teacher_logits" else []),
        save=lambda folder: tfm.save_student(student, tokenizer, folder),
        out=run.out, history=run.history, checkpoints=run.checkpoints, terms=Weights.terms(),
        summary={"student": run.name, "method": "distilbert", "init": cfg.init, "train_on": cfg.train_on,
                 "rows": origins, "teacher_layers": layers}),
        params)


# ---------------------------------------------------------------- general distillation (masked LM)
class GeneralConfig(Section):
    temperature: Positive = Field(2.0, description="softmax temperature of the soft CE")
    mlm_probability: Probability = Field(0.15, description="share of tokens masked (80/10/10)")
    weights: MLMWeights = weights_field(MLMWeights)


class MLMRecipe(WithTeacher):
    """The triple loss with the masked-LM heads of student and teacher, on masked general text."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, cfg: GeneralConfig, mask_id: int,
                 special_ids: Sequence[int]):
        super().__init__(teacher, cfg.weights.active())
        self.student = student
        self.projection = tfm.projection(student.config.hidden_size, teacher.config.hidden_size)
        self.temperature, self.mlm_probability, self.mask_id = cfg.temperature, cfg.mlm_probability, mask_id
        self.register_buffer("special_ids", torch.tensor(sorted(set(special_ids))), persistent=False)

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        ids = inputs["input_ids"]
        special = torch.isin(ids, self.special_ids.to(ids.device)) | (inputs["attention_mask"] == 0)
        # Global RNG (seeded by the stage, saved in Trainer checkpoints): a resumed run masks as an
        # uninterrupted one would.
        corrupted, mlm_labels = losses.mask_tokens(ids, special, self.mask_id, self.student.config.vocab_size,
                                                   self.mlm_probability)
        inputs = {**inputs, "input_ids": corrupted}
        t_out = self.run_teacher(inputs, output_hidden_states=True)
        s_out = self.student(**inputs, output_hidden_states=True)
        logits = s_out.logits.float()  # one fp32 copy feeds every term, so their gradients add up in fp32
        chosen = mlm_labels != -100
        terms = {}
        if self.active("soft"):
            terms["soft"] = (losses.soft_ce(logits[chosen], t_out.logits[chosen], self.temperature)
                             if bool(chosen.any()) else logits.sum() * 0.0)
        if self.active("mlm"):
            terms["mlm"] = losses.masked_lm(logits, mlm_labels)
        if self.active("cosine"):
            s_last = s_out.hidden_states[-1]
            if self.projection is not None:
                s_last = self.projection(s_last)
            terms["cosine"] = losses.cosine_hidden(s_last, t_out.hidden_states[-1], inputs["attention_mask"])
        return self.output(terms)


def general_recipe(student_config, teacher, cfg: GeneralConfig, layer_map: list[int], tokenizer):
    from transformers import BertForMaskedLM

    student = BertForMaskedLM(student_config)
    return student, MLMRecipe(student, teacher, cfg, tokenizer.mask_token_id, tokenizer.all_special_ids)


METHOD = Method(
    name="distilbert",
    title="DistilBERT (Sanh et al. 2019)",
    summary="the fine-tuned teacher's evenly spaced layers copied into a shallower BERT, trained with soft CE "
            "at T + hard CE + last-hidden-state cosine",
    student=DistilBERTStudent,
    steps=(Step("train", "soft CE + hard CE + hidden-state cosine against the fine-tuned teacher", Weights, train,
                deps=("data/${item.train_on}", "data/prepared", "models/teacher")),),
    # 1e-4, not 5e-5: on the default budget (10,000 rows, one epoch) the 3-layer student gained 2.3 points
    # from it on seed 42 (README, "distil3's learning rate"; 1.5e-4 and 2e-4 gave about the same)
    defaults={"distil3": {"max_rows": 10000, "learning_rate": 1e-4}},
    validate=check_student,
    objective=Objective(summary="masked-LM soft CE + MLM + cosine (needs a teacher with an MLM head)",
                        config=GeneralConfig, build=general_recipe, teacher=tfm.load_mlm_teacher, weights=MLMWeights),
)
