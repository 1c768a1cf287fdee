"""MiniLMv2 (Wang et al. 2021, arXiv 2012.15828): self-attention relation distillation. The student's last
layer learns the query-query, key-key and value-value relations of one teacher layer (KL divergence),
both split into the same number of relation heads, so head counts and widths may differ and no
projection is needed. The paper distils the last layer of base-size teachers and an upper-middle one
of large teachers. Here as a general-distillation objective and as step 1 of task distillation, then
the prediction layer (soft CE on the cached teacher logits).
"""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.data.batches import model_inputs
from pipeline.errors import ConfigError
from pipeline.methods import Method, Objective, StepRun, twostep
from pipeline.methods.recipes import WithTeacher
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import load_base_model
from pipeline.params.schema import PositiveInt, Section, weights, weights_field
from pipeline.training import losses

KINDS = ("query", "key", "value")
Weights = weights("MiniLMv2Weights", query=(1.0, "query-query relation KL"), key=(1.0, "key-key relation KL"),
                  value=(1.0, "value-value relation KL"))


class Relations(Section):
    relation_heads: PositiveInt = Field(
        12, description="relation heads Q, K and V are split into (must divide student and teacher widths)")
    teacher_layer: PositiveInt | None = Field(
        None, description="1-based teacher layer whose relations the student's last layer learns (null: the last)")
    weights: Weights = weights_field(Weights)


class RelationRecipe(WithTeacher):
    """The Q/K/V relation KL terms (eq. 5-6) between one teacher layer and the student's last layer."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, cfg: Relations, key: str):
        super().__init__(teacher, cfg.weights.active())
        s, t = encoders.dims(student), encoders.dims(teacher)
        widths = {"student": s.hidden, "teacher": t.hidden}
        bad = [f"{who} width {w}" for who, w in widths.items() if w % cfg.relation_heads]
        if bad:
            raise ConfigError(f"{key}.relation_heads: {cfg.relation_heads} does not divide the {' and '.join(bad)}")
        layer = cfg.teacher_layer if cfg.teacher_layer is not None else t.layers
        if not 1 <= layer <= t.layers:
            raise ConfigError(f"{key}.teacher_layer: the teacher's layers are 1..{t.layers}, got {layer}")
        self.student, self.heads, self.teacher_layer = student, cfg.relation_heads, layer

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, **batch) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        with torch.no_grad():
            _, t = tfm.forward_internals(self.teacher_on(inputs["input_ids"].device), inputs)
        _, s = tfm.forward_internals(self.student, inputs)
        student, teacher = s.vectors(-1), t.vectors(self.teacher_layer - 1)
        return self.output({kind: losses.relation_kl(student[kind], teacher[kind], inputs["attention_mask"], self.heads)
                            for kind in KINDS if self.active(kind)})


class RelationStep(twostep.Step1, Relations):
    pass


class MiniLMv2Student(twostep.TwoStepStudent):
    init: str = Field("minilmv2", description=twostep.INIT_HELP)
    intermediate: RelationStep = Field(
        default_factory=RelationStep,
        description="step 1: Q/K/V relation KL of the last layer, fine-tuned teacher run on the fly")
    prediction: twostep.PredictionStep = Field(
        default_factory=twostep.PredictionStep, description="step 2: soft CE on the cached teacher logits")


def step1_recipe(student, teacher, step: RelationStep, key: str, run: StepRun):
    recipe = RelationRecipe(student, teacher, step, key)
    return recipe, {"teacher_layer": recipe.teacher_layer, "relation_heads": step.relation_heads}


def general_recipe(student_config, teacher, cfg: Relations, layer_map: list[int], tokenizer):
    from transformers import BertModel

    student = BertModel(student_config, add_pooling_layer=False)
    return student, RelationRecipe(student, teacher, cfg, "general_distill.minilmv2")


METHOD = Method(
    name="minilmv2",
    title="MiniLMv2 (Wang et al. 2021)",
    summary="general distillation of one teacher layer's (the last by default) query-query, key-key and "
            "value-value self-attention relations (KL, relation heads), the same relations at task level, then "
            "prediction-layer soft CE",
    student=MiniLMv2Student,
    steps=twostep.steps("minilmv2", step1_recipe, "Q/K/V relation KL against the fine-tuned teacher", Weights),
    defaults={"minilm4": twostep.SHIPPED_PREDICTION},
    objective=Objective(summary="Q/K/V self-attention relations of one teacher layer", config=Relations,
                        build=general_recipe, teacher=load_base_model, weights=Weights),
    validate=lambda name, cfg, params: twostep.check_init("minilmv2", name, cfg, params),
)
