"""What every training recipe shares. A recipe is a small `nn.Module` around a student (plus trainable
extras such as width projections) whose forward computes the method's raw named loss terms and returns
{"loss": sum(weight x term), <term>: value, ..., "logits"}; pipeline.training.driver trains it.

Terms with weight 0 are not computed (their inputs may not exist, e.g. attention scores when head
counts differ). Teachers are held outside the module tree: frozen, never in the optimizer, never in a
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pipeline.models import encoders
from pipeline.training import losses
from pipeline.training.inference import use_attention_for


class Recipe(nn.Module):
    """Base of the training wrappers. Checkpoints store each shared tensor once (a student with tied
    input/output embeddings would otherwise be refused by safetensors); loading restores the tie."""

    _keys_to_ignore_on_save = None  # read by Trainer when it resumes a non-PreTrainedModel

    def __init__(self, weights: Mapping[str, float]):
        super().__init__()
        self.weights = {term: float(w) for term, w in weights.items() if w}

    def active(self, term: str) -> bool:
        return term in self.weights

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss: the weighted sum of the terms, in the order the recipe computed them."""
        return sum(self.weights[name] * value for name, value in terms.items())

    def output(self, terms: dict[str, torch.Tensor], logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = {"loss": self.total(terms), **terms}
        if logits is not None:
            out["logits"] = logits
        return out

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


def evaluation(logits: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """What a recipe returns for a dev batch: gold-label cross-entropy and the logits."""
    return {"loss": losses.hard_loss(logits, labels), "logits": logits}


def frozen(model: nn.Module) -> nn.Module:
    use_attention_for(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class WithTeacher(Recipe):
    """A recipe that runs a frozen teacher on the fly, held out of the module tree and moved along."""

    def __init__(self, teacher: nn.Module, weights: Mapping[str, float]):
        super().__init__(weights)
        object.__setattr__(self, "_teacher", frozen(teacher))

    @property
    def teacher(self) -> nn.Module:
        return self._teacher

    def teacher_on(self, device: torch.device) -> nn.Module:
        if next(self._teacher.parameters()).device != device:
            self._teacher.to(device)
        return self._teacher

    @torch.no_grad()
    def run_teacher(self, inputs: dict[str, torch.Tensor], **kwargs):
        """The teacher's forward pass on a batch (the inputs it takes), without gradients."""
        teacher = self.teacher_on(inputs["input_ids"].device)
        return teacher(**encoders.accepted(teacher, inputs), **kwargs)
