"""LRC-BERT (Fu et al. 2021, arXiv 2012.07335): COS-NCE, a contrastive loss on the angular distance
between each mapped student layer's output (through its own learned linear map to the teacher width)
and the teacher's, against negatives from the batch or a memory bank; gradient perturbation of the
embedding output; two-stage training: COS-NCE alone, then soft CE + hard CE + COS-NCE. Negatives
that are near-copies of an example (an augmented row of the same sentence, the same text again, the
example itself in the bank) are left out: the loss would otherwise push the student away from the
teacher's representation of what is the same sentence.

With `epsilon` > 0 every training step runs the student twice: a clean pass gives the gradient of the
loss with respect to the embedding-layer output, and the step trains on a second pass whose embedding
output is moved by epsilon along that normalised gradient. The paper reports a 4-layer, 312-wide
student (14.5M parameters) 7.5x smaller and 9.6x faster than BERT-base that keeps about 97.4% of its
average GLUE score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from pipeline.data.batches import model_inputs
from pipeline.methods import Method, StepRun, twostep
from pipeline.methods.recipes import WithTeacher, evaluation
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import load_teacher
from pipeline.params.schema import (LAYER_MAP_HELP, LayerMap, NonNegative, Positive, PositiveInt, Section, weights,
                                    weights_field)
from pipeline.training import losses

COS_NCE = (1.0, "COS-NCE on the mapped layers, averaged over them")
TOKEN_TERMS = ("cos_nce",)  # step 2's term that runs the teacher on the student's tokens
Stage1Weights = weights("LRCStage1Weights", cos_nce=COS_NCE)
Stage2Weights = weights("LRCStage2Weights", cos_nce=COS_NCE,
                        soft=(1.0, "soft CE at T on the cached teacher logits"),
                        hard=(1.0, "CE on gold labels (augmented rows have none)"))


class CosNCEConfig(Section):
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    negatives: Literal["in_batch", "memory_bank"] = Field(
        "in_batch", description="in_batch: other examples of the batch; memory_bank: teacher representations of earlier batches")
    k: PositiveInt | None = Field(
        None, description="negatives per example (in_batch: null = all others of the batch; memory_bank: bank size, required)")
    temperature: Positive = Field(0.1, description="temperature tau of the NCE softmax")

    @model_validator(mode="after")
    def _bank_size(self) -> CosNCEConfig:
        if self.negatives == "memory_bank" and self.k is None:
            raise ValueError("k (the memory bank size) is required with negatives: memory_bank")
        return self


class Contrastive(Section):
    """What both stages have (each with its own values)."""

    cos_nce: CosNCEConfig = Field(default_factory=CosNCEConfig, description="COS-NCE on the mapped layers")
    epsilon: NonNegative = Field(
        1.0, description="gradient perturbation: norm of the step along the loss gradient added to the embedding output (0: off)")


class Stage1(twostep.Step1, Contrastive):
    weights: Stage1Weights = weights_field(Stage1Weights)


class Stage2(twostep.Step2, Contrastive):
    weights: Stage2Weights = weights_field(Stage2Weights)


class LRCStudent(twostep.TwoStepStudent):
    intermediate: Stage1 = Field(default_factory=Stage1,
                                 description="stage 1: COS-NCE only, fine-tuned teacher run on the fly")
    prediction: Stage2 = Field(default_factory=Stage2,
                               description="stage 2: soft CE (cached teacher logits) + hard CE + COS-NCE")


@dataclass
class Contrast:
    positives: list[torch.Tensor]  # per mapped layer, the teacher's representation of each example
    pools: list[torch.Tensor]  # per mapped layer, the representations negatives are taken from
    index: torch.Tensor  # (batch, K) each example's negatives in the pools
    valid: torch.Tensor | None  # (batch, K) False for a negative that is a near-copy of its example
    length: int | None  # positions representations are padded to (the memory bank's)


class ContrastiveRecipe(WithTeacher):
    """COS-NCE per mapped layer with gradient perturbation; in stage 2 also the prediction-layer terms."""

    def __init__(self, student: nn.Module, teacher: nn.Module, layer_map: list[int], cos: CosNCEConfig,
                 epsilon: float, weights: dict[str, float], temperature: float = 1.0, max_length: int = 128):
        super().__init__(teacher, weights)
        s_w, t_w = encoders.dims(student).hidden, encoders.dims(teacher).hidden
        self.student, self.layer_map, self.cos = student, layer_map, cos
        self.epsilon, self.temperature = epsilon, temperature
        self.projection = nn.ModuleList(nn.Linear(s_w, t_w) for _ in layer_map)
        if s_w == t_w:
            for proj in self.projection:
                nn.init.eye_(proj.weight)
                nn.init.zeros_(proj.bias)
        self.bank_length = max_length
        if cos.negatives == "memory_bank":  # teacher representations of earlier batches, newest first; buffers,
            # so checkpoints hold them and a resumed run goes on with the bank it had
            self.register_buffer("bank", torch.zeros(len(layer_map), cos.k, max_length * t_w))
            self.register_buffer("bank_ids", torch.full((cos.k, 2), -1, dtype=torch.long))  # example ids
            self.register_buffer("bank_filled", torch.zeros((), dtype=torch.long))

    def _contrast_set(self, teacher, mask: torch.Tensor, ids: torch.Tensor | None) -> Contrast:
        """The teacher's representations of the batch (positives) per mapped layer, the pools negatives
        come from, each example's negatives and which of them are near-copies of it (sharing its source
        row or its text: augmented rows of one sentence, repeated texts, the example itself in the bank).
        With a memory bank, representations are zero-padded to its fixed length (no cosine changes)."""
        length = self.bank_length if self.cos.negatives == "memory_bank" else None
        positives = [losses.flat_states(teacher.hidden_states[t], mask, length) for t in self.layer_map]
        b = mask.shape[0]
        filled = int(self.bank_filled) if length is not None else 0
        if filled == 0:  # in-batch negatives (and an empty bank's first batch)
            pools, pool_ids = positives, ids
            index = losses.in_batch_negatives(b, self.cos.k).to(mask.device)
        else:
            pools, pool_ids = [bank[:filled] for bank in self.bank], self.bank_ids[:filled]
            index = torch.arange(filled, device=mask.device).expand(b, -1)
        valid = None if ids is None else ~losses.same_example(ids, pool_ids, index)
        return Contrast(positives, pools, index, valid, length)

    def _enqueue(self, positives: list[torch.Tensor], ids: torch.Tensor | None) -> None:
        n = min(positives[0].shape[0], self.cos.k)
        for layer, rep in enumerate(positives):  # newest first; the oldest fall off the end
            self.bank[layer] = torch.cat([rep[:n].detach(), self.bank[layer][:-n]])
        if ids is not None:
            self.bank_ids.copy_(torch.cat([ids[:n], self.bank_ids[:-n]]))
        self.bank_filled.fill_(min(int(self.bank_filled) + n, self.cos.k))

    def _terms(self, inputs, contrast: Contrast | None, labels, teacher_logits, offset=None):
        mask, c = inputs["attention_mask"], contrast
        with tfm.embedding_output(self.student, offset) as seen:
            out = self.student(**inputs, output_hidden_states=True)
        terms = {}
        if self.active("cos_nce"):
            cos = sum(losses.cos_nce(losses.flat_states(proj(out.hidden_states[m]), mask, c.length), pos, pool, c.index,
                                     self.cos.temperature, c.valid)
                      for m, (proj, pos, pool) in enumerate(zip(self.projection, c.positives, c.pools, strict=True),
                                                            start=1))
            terms["cos_nce"] = cos / len(self.layer_map)
        if self.active("soft"):
            terms["soft"] = losses.soft_loss(out.logits, teacher_logits, self.temperature)
        if self.active("hard"):
            terms["hard"] = losses.hard_loss(out.logits, labels)
        return terms, seen[0], out.logits

    def forward(self, labels=None, teacher_logits=None, num_items_in_batch=None, example_ids=None,
                **batch) -> dict[str, torch.Tensor]:
        inputs = model_inputs(batch)
        if not self.training:  # evaluation batches: gold labels only
            return evaluation(self.student(**inputs).logits, labels)
        contrast = None
        if self.active("cos_nce"):  # the only term that runs the teacher (on the student's tokens: its tokenizer)
            teacher = self.run_teacher(inputs, output_hidden_states=True)
            contrast = self._contrast_set(teacher, inputs["attention_mask"], example_ids)
        terms, embedded, logits = self._terms(inputs, contrast, labels, teacher_logits)
        if self.epsilon:  # train on the perturbed pass; the clean one only gives the gradient direction
            grad, = torch.autograd.grad(self.total(terms), embedded)
            offset = losses.perturbation(grad, inputs["attention_mask"], self.epsilon)
            terms, _, logits = self._terms(inputs, contrast, labels, teacher_logits, offset)
        if contrast is not None and self.cos.negatives == "memory_bank":
            self._enqueue(contrast.positives, example_ids)
        return self.output(terms, logits)


def stage1_recipe(student, teacher, step: Stage1, key: str, run: StepRun):
    layer_map = twostep.layer_map(step.cos_nce.layer_map, student, teacher, f"{key}.cos_nce.layer_map")
    return ContrastiveRecipe(student, teacher, layer_map, step.cos_nce, step.epsilon, step.weights.active(),
                             max_length=run.params.data.max_length), {"layer_map": layer_map}


def stage2_recipe(student, step: Stage2, key: str, run: StepRun):
    teacher, _ = load_teacher()
    layer_map = twostep.layer_map(step.cos_nce.layer_map, student, teacher, f"{key}.cos_nce.layer_map")
    recipe = ContrastiveRecipe(student, teacher, layer_map, step.cos_nce, step.epsilon, step.weights.active(),
                               step.temperature, run.params.data.max_length)
    tfm.load_projection(run.previous, recipe.projection)
    return recipe, {"layer_map": layer_map}


METHOD = Method(
    name="lrc",
    title="LRC-BERT (Fu et al. 2021)",
    summary="COS-NCE (contrastive, angular distance to the teacher's intermediate layers against negatives) "
            "alone, then soft CE + hard CE + COS-NCE, with gradient perturbation of the embeddings",
    student=LRCStudent,
    steps=twostep.steps("lrc", stage1_recipe, "stage 1: COS-NCE against the fine-tuned teacher", Stage1Weights,
                        stage2_recipe, "stage 2: soft CE + hard CE + COS-NCE", Stage2Weights, needs_teacher=True,
                        token_terms=TOKEN_TERMS),
    # like the other shipped two-step students (its step 2 has CE on gold labels already: the paper's), on a third
    # of their step-2 rows: a step runs the teacher and the student twice, 2.8x the cost of theirs (README)
    defaults={"lrc4": {"prediction": {"dropout": 0.0, "learning_rate": 4e-4, "batch_size": twostep.STEP2_BATCH,
                                      "max_rows": twostep.STEP2_ROWS // 3}}},
    validate=lambda name, cfg, params: twostep.check_init("lrc", name, cfg, params, TOKEN_TERMS),
)
