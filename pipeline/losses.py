"""Distillation losses as small pure functions over tensors.

Conventions: `student`/`teacher` are logits of shape (batch, num_labels); `labels` are class ids
with -1 for rows that have no gold label (augmented rows), which hard-label terms ignore.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -1


def hard_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with gold labels, averaged over labelled rows; 0 when the batch has none."""
    mask = labels != IGNORE
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], labels[mask])


def logit_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Tang et al. 2019, eq. 2: ||z_teacher - z_student||^2, summed over classes, averaged over rows."""
    return (student - teacher.to(student.dtype)).pow(2).sum(-1).mean()


def tang_kd(student: torch.Tensor, teacher: torch.Tensor | None, labels: torch.Tensor | None,
            alpha: float) -> torch.Tensor:
    """Tang et al. 2019, eq. 3: alpha * CE(labels) + (1 - alpha) * MSE(student, teacher logits).

    Rows without a gold label contribute only to the distillation term. With no teacher logits
    (the no-KD baseline, or evaluation) it is plain cross-entropy.
    """
    if teacher is None:
        return hard_ce(student, labels)
    distill = logit_mse(student, teacher)
    if labels is None or alpha == 0.0:
        return distill
    return alpha * hard_ce(student, labels) + (1.0 - alpha) * distill
