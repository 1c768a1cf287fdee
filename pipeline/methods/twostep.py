"""What the two-step task methods (TinyBERT, MiniLMv2, LRC-BERT) share: the student entry's common keys,
the step budgets, where step 1 starts from, and the two step runners.

Step 1 (`intermediate`) trains the intermediate layers against the fine-tuned teacher run on the fly,
with the method's recipe; step 2 (`prediction`) adds the prediction layer, by default with soft CE at
T on the cached teacher logits (LRC-BERT brings its own recipe). A method file supplies its recipes
and schemas; these runners do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from pipeline.artifacts import PREPARED, TEACHER, TEACHER_LOGITS, atomic_path, general_dir, load_dataset_dir, write_json
from pipeline.data.batches import encode_rows, model_inputs, row_origins, task_rows, token_collator
from pipeline.errors import ConfigError, ModelError
from pipeline.methods import Step, StepRun, objectives
from pipeline.methods.recipes import Recipe, evaluation
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import (PRETRAINED_PREFIX, load_base_model, load_classifier, load_teacher, load_tokenizer,
                                local_model_type, pretrained_spec, resolve_pretrained, same_tokenizer)
from pipeline.params.schema import (MIN_TASK_STEPS, AugmentedRows, Budget, LearningRate, MaxRows, MinSteps, NonNegative,
                                    Positive, PositiveInt, Section, ShapeKey, Weights, augmentation_field,
                                    augmented_rows_field, unlabelled_field, weights, weights_field)
from pipeline.tasks import Task, prepared_task
from pipeline.training import driver as training
from pipeline.training import losses

RANDOM, SLICE = "random", "teacher_slice"
NO_GENERAL = (RANDOM, SLICE)  # inits that need no general_distill student
INIT_HELP = ("the general_distill student of this objective (listed in general_distill.objectives); "
             f"{SLICE}: where general distillation starts (the pretrained teacher's mapped layers cut to the "
             f"student's width), without it; {RANDOM} weights; or {PRETRAINED_PREFIX}<Hub id | folder | "
             "package:NAME>, a small pretrained model of any supported family (with another tokenizer than the "
             "teacher's, set intermediate.epochs: 0)")


class TwoStepStudent(Section):
    """Keys every two-step student has; a method adds its `intermediate` and `prediction` steps."""

    init: str = Field("tinybert", description=INIT_HELP)
    shape: dict[ShapeKey, PositiveInt] = Field(
        default_factory=dict,
        description="this student's Transformer shape where it differs from its init's (general_distill.student, or "
                "its objective's own), e.g. {layers: 2, hidden: 192} ({}: that shape). From a general_distill "
                "student, its mapped layers cut to this shape, as teacher_slice cuts the teacher's; not with a "
                "pretrained init, which has its own")
    augmentation: str | None = augmentation_field()
    augmented_rows: AugmentedRows = augmented_rows_field()
    unlabelled: bool = unlabelled_field()

    @field_validator("init")
    @classmethod
    def _known_init(cls, value: str) -> str:
        known = sorted(objectives())
        if value not in NO_GENERAL and value not in known and not pretrained_spec(value):
            raise ValueError(f"must be one of {', '.join(known)} (a general_distill objective), {SLICE}, {RANDOM} or "
                             f"{PRETRAINED_PREFIX}<Hub id | folder | package:NAME>")
        return value


class Step1(Budget):
    max_rows: MaxRows = 2000
    epochs: NonNegative = Field(1.0, description="training epochs (0: step 1 trains nothing, the student goes to "
                                                 "step 2 as it starts)")


class Step2(Budget):
    max_rows: MaxRows = 12000
    min_steps: MinSteps = MIN_TASK_STEPS
    learning_rate: LearningRate = 2e-4
    temperature: Positive = Field(1.0, description="softmax temperature of the soft CE")


PredictionWeights = weights("PredictionWeights", soft=(1.0, "soft CE at T on the cached teacher logits"),
                            hard=(0.0, "CE on gold labels (augmented rows have none)"))


class PredictionStep(Step2):
    weights: PredictionWeights = weights_field(PredictionWeights)


# How the shipped students' step 2 differs from the papers' (soft CE only, BERT's dropout 0.1, batch 32): CE on
# the gold labels of the train rows beside the soft CE, no dropout, a learning rate for its short schedule
# (README: +1.6, +0.8 and +1.3 points on the default budget), and 48,000 sampled rows at batch 64, which on a
# CPU costs what about 29,000 rows at batch 32 cost (README: +4.4 points against 12,000 rows at batch 32).
STEP2_ROWS, STEP2_BATCH = 48000, 64
SHIPPED_PREDICTION = {"prediction": {"max_rows": STEP2_ROWS, "batch_size": STEP2_BATCH, "dropout": 0.0,
                                     "learning_rate": 4e-4, "weights": {"hard": 1.0}}}


def student_shape(params, cfg: TwoStepStudent):
    """A Transformer student's shape: its init's (general_distill.student, or its objective's own) with the
    student's own `shape` keys on top."""
    return params.general_distill.shape(cfg.init).model_copy(update=cfg.shape)


def general_student(init: str) -> Path | None:
    """The general_distill student an `init` starts from (models/general/<objective>), or None."""
    return None if init in NO_GENERAL or pretrained_spec(init) else general_dir(init)


def check_init(method: str, name: str, cfg: TwoStepStudent, params, token_terms: tuple[str, ...] = ()) -> None:
    """A student's `init` must name a general-distillation stage that runs, or a pretrained model of a supported
    family; a pretrained student with a tokenizer of its own can only learn per text (`token_terms`: the
    prediction step's terms that compare the teacher and the student token by token)."""
    spec = pretrained_spec(cfg.init)
    if cfg.shape:
        check_shape(f"{method}.{name}", cfg, params)
    if spec is None:
        if cfg.init not in NO_GENERAL and cfg.init not in params.general_distill.objectives:
            raise ValueError(f"{method}.{name}.init: {cfg.init!r} is not in general_distill.objectives "
                             f"{params.general_distill.objectives} (add it there, or use init: {SLICE} or {RANDOM})")
        return
    key = f"{method}.{name}.init"
    try:
        local_model_type(spec, key)
        same = same_tokenizer(spec, params.teacher.pretrained, local_only=True)
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    if same is False:
        check_token_steps(method, name, cfg, token_terms)


def check_shape(key: str, cfg: TwoStepStudent, params) -> None:
    """A student's shape of its own: a pretrained model has its own; one cut from a general_distill student must
    fit inside it (no deeper, wider or with a wider feed-forward, heads a divisor of its heads and a width a
    multiple of them)."""
    if pretrained_spec(cfg.init):
        raise ValueError(f"{key}.shape: a pretrained student has its own shape (remove shape, or set init: {SLICE})")
    shape = student_shape(params, cfg)
    if shape.hidden % shape.heads:
        raise ValueError(f"{key}.shape: hidden size {shape.hidden} is not a multiple of its {shape.heads} heads")
    if cfg.init in NO_GENERAL:
        return
    general = params.general_distill.shape(cfg.init)
    larger = [f"{k} {getattr(shape, k)} > {getattr(general, k)}" for k in ("layers", "hidden", "intermediate")
              if getattr(shape, k) > getattr(general, k)]
    if larger or general.heads % shape.heads or shape.hidden % general.heads:
        why = "; ".join(larger) or (f"heads {shape.heads} must divide its {general.heads} and the width a multiple "
                                    f"of them")
        raise ValueError(f"{key}.shape: a student cut from general_distill@{cfg.init} ({general.layers}x{general.hidden}"
                         f"x{general.heads}x{general.intermediate}) must fit inside it: {why}")


def check_token_steps(method: str, name: str, cfg: TwoStepStudent, token_terms: tuple[str, ...]) -> None:
    """ValueError when a student whose tokenizer is not the teacher's would run a step that matches the two
    token by token (step 1; `token_terms` of step 2)."""
    why = (f"{method}.{name}.init: {cfg.init} has a tokenizer of its own (not teacher.pretrained's), and")
    if cfg.intermediate.epochs:
        raise ValueError(f"{why} step 1 ({method}_intermediate) matches the teacher token by token and layer by "
                         f"layer, which needs the teacher's tokenizer: set {method}.{name}.intermediate.epochs: 0 to "
                         "skip it; step 2, prediction-layer distillation on the cached teacher outputs (per text), "
                         "works with any tokenizer")
    wrong = [t for t in token_terms if cfg.prediction.weights.active().get(t)]
    if wrong:
        raise ValueError(f"{why} step 2's {', '.join(wrong)} compares the teacher token by token: set "
                         f"{method}.{name}.prediction.weights.{wrong[0]}: 0 (its per-text terms work with any "
                         "tokenizer)")


class PredictionRecipe(Recipe):
    """Step 2: soft CE at T between the student's logits and the cached teacher logits (+ hard CE)."""

    def __init__(self, student: torch.nn.Module, temperature: float, weights: dict[str, float]):
        super().__init__(weights)
        self.student = student
        self.temperature = temperature

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        logits = self.student(**model_inputs(batch)).logits
        if teacher_logits is None:  # evaluation batches carry gold labels only
            return evaluation(logits, labels)
        terms = {}
        if self.active("soft"):
            terms["soft"] = losses.soft_loss(logits, teacher_logits, self.temperature)
        if self.active("hard"):
            terms["hard"] = losses.hard_loss(logits, labels)
        return self.output(terms, logits)


def task_student(params, task: Task, cfg: TwoStepStudent, teacher_config, key: str) -> tuple[Any, torch.Tensor | None]:
    """The step-1 student with a classification head, and the hidden dimensions it kept where it was cut from a
    wider model (else None): the general_distill student of its `init`, cut to the student's shape where it has
    one of its own; a pretrained model of its own (`pretrained:<spec>`, a fresh head); or, of its shape
    (student_shape), the pretrained teacher cut as general distillation starts (`teacher_slice`) or random
    weights (the no-general-distillation ablations). `key`: the student's params key."""
    from transformers import BertForSequenceClassification

    labels = task.model_labels()
    init = cfg.init
    spec = pretrained_spec(init)
    shape = student_shape(params, cfg)

    def built(where: str):  # a BERT classifier of the student's shape (`where`: the key that sets it)
        config = tfm.student_config(teacher_config, shape, params.data.max_length, key=where)
        for k, v in labels.items():
            setattr(config, k, v)
        return BertForSequenceClassification(config)

    if spec is not None:
        student = load_classifier(spec, task, key=f"{key}.init")
        encoders.family(student, key=f"{key}.init")
        return student, None
    if init in NO_GENERAL:
        where = f"{key}.shape" if cfg.shape else "general_distill.student"
        student = built(where)
        if init == RANDOM:
            return student, None
        source = "teacher.pretrained"
        pretrained = load_base_model(resolve_pretrained(params.teacher.pretrained, source), source)
        layer_map = tfm.resolve_layer_map(params.general_distill.layer_map, shape.layers,
                                          encoders.dims(pretrained).layers, "general_distill.layer_map")
        return student, tfm.slice_from_teacher(student, pretrained, layer_map, key=where)
    folder = general_student(init)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: no general_distill student (run `dvc repro general_distill@{init}`)")
    if shape == params.general_distill.shape(init):  # its init's shape: the general student itself
        return BertForSequenceClassification.from_pretrained(str(folder), **labels), None
    # a shape of its own: the general student's mapped layers cut to it, as the teacher is cut for teacher_slice
    general = load_base_model(str(folder), str(folder))
    student = built(f"{key}.shape")
    layer_map = tfm.uniform_layer_map(shape.layers, encoders.dims(general).layers)
    return student, tfm.slice_from_teacher(student, general, layer_map, key=f"{key}.shape")


def layer_map(step_map, student, teacher, key: str) -> list[int]:
    return tfm.resolve_layer_map(step_map, encoders.dims(student).layers, encoders.dims(teacher).layers, key)


# A step-1 recipe factory: (student, teacher, step config, params key of the step, the run) -> (recipe, summary details)
Step1Recipe = Callable[[Any, Any, Any, str, StepRun], tuple[Recipe, dict[str, Any]]]


def refuse_token_steps(method: str, run: StepRun, student: str, token_terms: tuple[str, ...]) -> None:
    """At run time, what validation checks where both models are on disk (a Hub id is not): a student with a
    tokenizer of its own runs no step that matches the teacher token by token."""
    if not same_tokenizer(student, str(TEACHER)):
        try:
            check_token_steps(method, run.name, run.cfg, token_terms)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def run_intermediate(method: str, build: Step1Recipe, run: StepRun, token_terms: tuple[str, ...] = ()
                     ) -> dict[str, Any]:
    """Step 1: the intermediate layers learn the fine-tuned teacher (run on the fly) on train (+ augmented)
    rows with the method's recipe; the student is saved with its projection for step 2."""
    from transformers import set_seed

    params, cfg = run.params, run.cfg
    step = cfg.intermediate
    task = prepared_task()
    teacher, tokenizer = load_teacher()
    spec = pretrained_spec(cfg.init)
    own = tokenizer if spec is None else load_tokenizer(spec, key=f"{method}.{run.name}.init")
    if spec is not None:
        refuse_token_steps(method, run, spec, token_terms)
    set_seed(params.seed)
    student, kept = task_student(params, task, cfg, teacher.config, f"{method}.{run.name}")
    if not step.epochs:  # nothing to learn here: the student goes to step 2 as it starts
        with atomic_path(run.out) as tmp:
            tmp.mkdir()
            tfm.save_student(student, own, tmp)
        write_json(run.history, [])  # an empty training log
        return {"student": run.name, "method": method, "step": "intermediate", "init": cfg.init, "trained": False}
    recipe, details = build(student, teacher, step, f"{method}.{run.name}.intermediate", run)
    projection = getattr(recipe, "projection", None)
    if kept is not None and projection is not None:  # cut from the teacher, or from a general student
        tfm.sliced_projection(projection, kept, general_student(cfg.init))
    elif general_student(cfg.init) is not None:
        tfm.load_projection(general_student(cfg.init), projection)
    rows = task_rows(TEACHER_LOGITS, cfg.augmentation, step.max_rows, params.seed, cfg.augmented_rows,
                     cfg.unlabelled)
    return training.run(training.Job(
        model=recipe, train=encode_rows(tokenizer, rows, task, params.data.max_length),
        collate=token_collator(tokenizer), budget=step,
        fingerprint=run.declared,
        inputs=[TEACHER, TEACHER_LOGITS] + [p for p in [general_student(cfg.init)] if p is not None],
        save=lambda folder: tfm.save_student(student, own, folder, projection),
        out=run.out, history=run.history, checkpoints=run.checkpoints, terms=step.weights.terms(),
        summary={"student": run.name, "method": method, "step": "intermediate", "init": cfg.init,
                 "augmentation": cfg.augmentation, "augmented_rows": cfg.augmented_rows, "rows": row_origins(rows),
                 **details}), params)


# A step-2 recipe factory: (student, step config, params key of the step, the run) -> (recipe, summary details)
Step2Recipe = Callable[[Any, Any, str, StepRun], tuple[Recipe, dict[str, Any]]]


def prediction_recipe(student, step: PredictionStep, key: str, run: StepRun) -> tuple[Recipe, dict[str, Any]]:
    return PredictionRecipe(student, step.temperature, step.weights.active()), {}


def run_prediction(method: str, run: StepRun, build: Step2Recipe = prediction_recipe,
                   needs_teacher: bool = False, token_terms: tuple[str, ...] = ()) -> dict[str, Any]:
    """Step 2, from the step-1 student: its recipe on train (+ augmented) rows with their cached teacher
    logits, evaluated on dev; saves a Hugging Face classifier."""
    from transformers import AutoModelForSequenceClassification, set_seed

    params, cfg = run.params, run.cfg
    step = cfg.prediction
    task = prepared_task()
    if not (run.previous / "config.json").is_file():
        raise ModelError(f"{run.previous}: no step-1 student (run `dvc repro {method}_intermediate@{run.name}`)")
    tokenizer = load_tokenizer(str(run.previous), key=str(run.previous))
    if pretrained_spec(cfg.init) is not None:
        refuse_token_steps(method, run, str(run.previous), token_terms)
    set_seed(params.seed)
    student = AutoModelForSequenceClassification.from_pretrained(str(run.previous))
    recipe, details = build(student, step, f"{method}.{run.name}.prediction", run)
    rows = task_rows(TEACHER_LOGITS, cfg.augmentation, step.max_rows, params.seed, cfg.augmented_rows,
                     cfg.unlabelled)
    return training.run(training.Job(
        model=recipe, train=encode_rows(tokenizer, rows, task, params.data.max_length, with_logits=True),
        dev=encode_rows(tokenizer, load_dataset_dir(PREPARED)["dev"], task, params.data.max_length), task=task,
        collate=token_collator(tokenizer), budget=step,
        fingerprint=run.declared,
        inputs=[run.previous, TEACHER_LOGITS, PREPARED] + ([TEACHER] if needs_teacher else []),
        save=lambda folder: tfm.save_student(student, tokenizer, folder),
        out=run.out, history=run.history, checkpoints=run.checkpoints, terms=step.weights.terms(),
        summary={"student": run.name, "method": method, "step": "prediction", "init": cfg.init,
                 "augmentation": cfg.augmentation, "augmented_rows": cfg.augmented_rows, "rows": row_origins(rows),
                 **details}), params)


def steps(method: str, step1: Step1Recipe, summary1: str, weights1: type[Weights],
          step2: Step2Recipe = prediction_recipe, summary2: str = "soft CE on the cached teacher logits",
          weights2: type[Weights] = PredictionWeights, needs_teacher: bool = False,
          token_terms: tuple[str, ...] = ()) -> tuple[Step, Step]:
    """A two-step method's stages: `<method>_intermediate@NAME` (against the fine-tuned teacher, from the
    general student of `init`) then `<method>_prediction@NAME` (from step 1, on the cached logits);
    `token_terms`: step 2's terms that compare the teacher and the student token by token."""
    return (
        Step("intermediate", summary1, weights1, lambda run: run_intermediate(method, step1, run, token_terms),
             deps=("models/general", "models/teacher", "data/teacher_logits", "data/prepared"),
             keys=("init", "shape", "augmentation", "augmented_rows", "unlabelled", "intermediate"),
             shared=("precision", "seed", "data.max_length", "general_distill.student")),
        Step("prediction", summary2, weights2,
             lambda run: run_prediction(method, run, step2, needs_teacher, token_terms),
             deps=("${previous}", *(("models/teacher",) if needs_teacher else ()), "data/teacher_logits",
                   "data/prepared"),
             keys=("augmentation", "augmented_rows", "unlabelled", "prediction")),
    )
