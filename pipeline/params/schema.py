"""Building blocks of the typed params: sections, budgets, layer maps and loss weights.

Every loss in the pipeline follows one convention: a recipe computes raw named terms and the loss is
sum(weight * term) over the terms with a non-zero weight. A step declares its terms with `weights()`,
which makes the params schema of its `weights:` block: one field per term (with its default and
meaning), and an error naming the block and the declared terms for any other key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Dropout = Annotated[float, Field(ge=0, lt=1)] | None
DROPOUT_HELP = "dropout of the trained model during this step (null: the model's own, 0.1 for BERT)"

ShapeKey = Literal["layers", "hidden", "heads", "intermediate"]  # the keys of a Transformer student's shape
LayerMap = list[Annotated[int, Field(ge=1)]] | None
LAYER_MAP_HELP = "1-based teacher layer for each student layer (null: uniform, g(m) = m * N / M)"

# The fields of a training budget, each declared once (type, bounds, meaning); every section that trains (the
# teacher, general distillation, each step of a method) takes those it has and gives its own defaults:
# `epochs: Epochs = 3.0`.
MaxRows = Annotated[PositiveInt | None, Field(description="random sample of this many training rows (null: all)")]
Epochs = Annotated[float, Field(gt=0, description="training epochs: passes over the step's rows")]
MinSteps = Annotated[int, Field(ge=0, description="at least this many optimizer steps: more epochs over the same "
                                                  "rows where `epochs` gives fewer (0: `epochs` alone)")]
MaxSteps = Annotated[PositiveInt | None, Field(description="at most this many optimizer steps: training stops there "
                                                           "where `epochs` gives more (null: `epochs` alone)")]
LearningRate = Annotated[float, Field(gt=0, description="peak learning rate (AdamW; Adam for the BiLSTM)")]
BatchSize = Annotated[int, Field(gt=0, description="training batch size (rows; sequences in general distillation)")]
Warmup = Annotated[float, Field(ge=0, lt=1, description="share of steps with linear warm-up")]
StepDropout = Annotated[Dropout, Field(description=DROPOUT_HELP)]


def check_train_on(train_on: str, augmentation: str | None) -> None:
    """Augmented rows have teacher logits only: a student trained on the gold-labelled split has none."""
    if train_on == "prepared" and augmentation is not None:
        raise ValueError(f"augmentation: {augmentation!r} needs train_on: teacher_logits (augmented rows have "
                         "teacher logits, not gold labels); set augmentation: null to train on the prepared split")


def augmentation_field(default: str | None = "tang"):
    """A student's `augmentation`: the augmented rows it learns from beside the train rows (checked against
    augment.methods when params load)."""
    return Field(default, description="learn on train rows + the rows of this augmentation (an entry of "
                                      "augment.methods: tang, tinybert), with their teacher logits; null: train rows only")


TOP_UP, UNIFORM = "top_up", "uniform"
AugmentedRows = Literal["top_up", "uniform"]


def augmented_rows_field():
    """How a student's `max_rows` sample takes augmented rows beside the train rows."""
    return Field(TOP_UP, description="top_up: train rows first, then unlabelled rows, augmented rows only to fill "
                                     "the rest of max_rows; uniform: a uniform sample of them all (null max_rows: "
                                     "every row either way)")


GOLD_TERMS = ("hard",)  # loss terms that need a gold label; every other term learns from the teacher's outputs


def unlabelled_field(default: bool = True):
    """Whether a student learns from the unlabelled rows of data.unlabelled (checked when params load: it
    needs a term other than a gold-label one in every step)."""
    return Field(default, description="learn on the unlabelled rows (data.unlabelled) too, when there are any: "
                                      "the teacher-output terms on every row, gold-label terms on labelled rows only")


MIN_TASK_STEPS = 250  # the default floor of the teacher's and every student's task step: a small task's few rows
# still get the updates a fine-tuning run needs (250 steps at batch 64: 16,000 rows, four epochs of a 4,000-row task)


def check_steps(budget) -> None:
    if budget.max_steps is not None and budget.min_steps > budget.max_steps:
        raise ValueError(f"min_steps ({budget.min_steps}) is above max_steps ({budget.max_steps})")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(Section):
    """How much a training step learns from, and how fast."""

    max_rows: MaxRows = None
    epochs: Epochs = 1.0
    min_steps: MinSteps = 0
    max_steps: MaxSteps = None
    learning_rate: LearningRate = 1e-4
    batch_size: BatchSize = 32
    warmup_ratio: Warmup = 0.1
    dropout: StepDropout = None

    @model_validator(mode="after")
    def _steps(self):
        check_steps(self)
        return self


class Weights(Section):
    """Base of every `weights:` block; subclasses are made by `weights()`, one field per term."""

    @model_validator(mode="before")
    @classmethod
    def _known_terms(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown loss term {unknown[0]!r}; this step's terms are "
                                 f"{', '.join(cls.model_fields)}")
        return data

    @classmethod
    def terms(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    def active(self) -> dict[str, float]:
        """The terms that count: those with a non-zero weight (the others are not computed)."""
        return {term: w for term, w in self.model_dump().items() if w}


def weights(name: str, **terms: tuple[float, str]) -> type[Weights]:
    """The `weights:` schema of a step with these loss terms: term=(default weight, what the term is)."""
    fields = {term: (NonNegative, Field(default, description=doc)) for term, (default, doc) in terms.items()}
    return create_model(name, __base__=Weights, **fields)


def weights_field(model: type[Weights], **defaults: float):
    """A `weights:` field of a step's schema, with other defaults than the term declaration's."""
    return Field(default_factory=lambda: model(**defaults),
                 description="loss = sum of weight x term over these terms (0: the term is not computed)")


def declared(params: BaseModel, keys: Sequence[str]) -> dict[str, Any]:
    """The values of a stage's declared params keys (dotted, as dvc.yaml lists them; a section's key gives the
    whole section): what defines its result, and so its checkpoints' fingerprint."""
    tree = params.model_dump()
    found = {}
    for key in keys:
        value: Any = tree
        for part in key.split("."):
            value = value[part]
        found[key] = value
    return found
