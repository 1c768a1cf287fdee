"""TinyBERT (Jiao et al. 2020, arXiv 1909.10351): general distillation on a general corpus, then task
distillation in two steps: the intermediate layers (embedding output, hidden states and pre-softmax
attention scores, through a learned width projection) against the fine-tuned teacher, then the
prediction layer (soft CE on the cached teacher logits).

Two deliberate choices: the hidden and attention terms are averaged over the mapped layers (the paper
sums them), so the weights mean the same for any student depth; one projection W serves the embedding
and hidden terms (as in TinyBERT's released code; the paper writes W_e and W_h).
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.data.batches import model_inputs
from pipeline.errors import ConfigError
from pipeline.methods import Ablation, Method, Objective, StepRun, twostep
from pipeline.methods.recipes import WithTeacher
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import load_base_model
from pipeline.params.schema import LAYER_MAP_HELP, LayerMap, Section, weights, weights_field
from pipeline.training import losses

Weights = weights("TinyBERTWeights",
                  embedding=(1.0, "embedding-output MSE (through the projection)"),
                  hidden=(1.0, "hidden-state MSE of the mapped layers (through the projection), averaged"),
                  attention=(1.0, "pre-softmax attention-score MSE of the mapped layers, averaged"))


class IntermediateRecipe(WithTeacher):
    """Embedding, hidden-state and attention MSE (eqs. 7-10): student layer m learns from teacher layer
    layer_map[m-1], the embedding output from the teacher's."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, layer_map: list[int],
                 weights: dict[str, float]):
        super().__init__(teacher, weights)
        s, t = encoders.dims(student), encoders.dims(teacher)
        if self.active("attention") and s.heads != t.heads:
            raise ConfigError(f"the attention loss compares heads one to one: the student has {s.heads} heads, the "
                              f"teacher {t.heads} (set the student's heads to the teacher's, or the attention weight "
                              "to 0)")
        self.student = student
        self.projection = tfm.projection(s.hidden, t.hidden)
        self.layer_map = layer_map

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        with torch.no_grad():
            _, t = tfm.forward_internals(self.teacher_on(inputs["input_ids"].device), inputs)
        _, s = tfm.forward_internals(self.student, inputs)
        mask, pairs = inputs["attention_mask"], list(enumerate(self.layer_map, start=1))
        terms = {}
        if self.active("embedding"):
            terms["embedding"] = losses.hidden_mse(s.hidden[0], t.hidden[0], mask, self.projection)
        if self.active("hidden"):
            terms["hidden"] = sum(losses.hidden_mse(s.hidden[m], t.hidden[k], mask, self.projection)
                                  for m, k in pairs) / len(pairs)
        if self.active("attention"):
            terms["attention"] = sum(losses.attention_mse(s.scores(m - 1), t.scores(k - 1), mask, t.seen(k - 1))
                                     for m, k in pairs) / len(pairs)
        return self.output(terms)


# ---------------------------------------------------------------- task distillation
class IntermediateStep(twostep.Step1):
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    weights: Weights = weights_field(Weights)


class TinyBERTStudent(twostep.TwoStepStudent):
    intermediate: IntermediateStep = Field(
        default_factory=IntermediateStep,
        description="step 1: embedding + hidden + attention MSE, fine-tuned teacher run on the fly")
    prediction: twostep.PredictionStep = Field(
        default_factory=twostep.PredictionStep, description="step 2: soft CE on the cached teacher logits")


def step1_recipe(student, teacher, step: IntermediateStep, key: str, run: StepRun):
    layer_map = twostep.layer_map(step.layer_map, student, teacher, f"{key}.layer_map")
    return IntermediateRecipe(student, teacher, layer_map, step.weights.active()), {"layer_map": layer_map}


# ---------------------------------------------------------------- general distillation
class GeneralConfig(Section):
    weights: Weights = weights_field(Weights)


def general_recipe(student_config, teacher, cfg: GeneralConfig, layer_map: list[int], tokenizer):
    from transformers import BertModel

    student = BertModel(student_config, add_pooling_layer=False)
    return student, IntermediateRecipe(student, teacher, layer_map, cfg.weights.active())


TABLE6 = "Jiao et al. 2020, Table 6: TinyBERT4 on MNLI-m, MNLI-mm, MRPC and CoLA dev, 75.6 on average"


def task_budget(cfg: TinyBERTStudent, params) -> str:
    s1, s2 = cfg.intermediate, cfg.prediction

    def rows(n):
        return "all rows" if n is None else f"{n:,} rows"
    return (f"step 1: {rows(s1.max_rows)} x {s1.epochs:g} epoch, step 2: {rows(s2.max_rows)} x {s2.epochs:g}; the "
            "paper: 10 epochs of step 1 and 3 of step 2 over about 20 augmented copies of every train example")


ABLATIONS = {
    "tinybert4_nogd": Ablation(
        base="tinybert4", leaves_out="general distillation and the slice init (random weights)",
        paper=f"w/o GD: 72.5 ({TABLE6})", paper_points=3.1, budget=task_budget),
    "tinybert4_slice": Ablation(
        base="tinybert4", leaves_out="general distillation (starts from the teacher slice it starts from)",
        paper="no such cell: the paper's w/o GD starts from random weights (-3.1 there)", paper_points=None,
        budget=task_budget),
    "tinybert4_noaug": Ablation(
        base="tinybert4", leaves_out="data augmentation (train rows only)",
        paper=f"w/o DA: 68.4 ({TABLE6})", paper_points=7.2, budget=task_budget),
    "tinybert4_uniform": Ablation(
        base="tinybert4", leaves_out="train rows first (each step samples its rows from train + augmented rows alike)",
        paper="no such cell: the paper trains on every augmented row, not on a sample", paper_points=None,
        budget=task_budget),
}

METHOD = Method(
    name="tinybert",
    title="TinyBERT (Jiao et al. 2020)",
    summary="general distillation on a general corpus, then intermediate-layer (embeddings, hidden states, "
            "attention scores) and prediction-layer (soft CE) task distillation",
    student=TinyBERTStudent,
    steps=twostep.steps("tinybert", step1_recipe, "embedding + hidden + attention MSE against the fine-tuned teacher",
                        Weights),
    # the ablations (ABLATIONS) run in the ablations, full and ci profiles, which name them: the default run's
    # 20 minutes go to the students themselves (README)
    defaults={"tinybert4": twostep.SHIPPED_PREDICTION},
    objective=Objective(summary="embeddings + hidden states + attention scores, through a learned projection",
                        config=GeneralConfig, build=general_recipe, teacher=load_base_model, weights=Weights),
    validate=lambda name, cfg, params: twostep.check_init("tinybert", name, cfg, params),
    ablations=ABLATIONS,
)
