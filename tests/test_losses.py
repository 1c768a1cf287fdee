"""Loss terms (pipeline.training.losses), the weighted sum every recipe applies (pipeline.methods.recipes) and the Tang
et al. recipe's terms."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.methods.recipes import Recipe
from pipeline.methods.tang import TangRecipe
from pipeline.training import losses
from pipeline.training.losses import hard_ce, logit_mse


def test_hard_ce_ignores_unlabelled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [5.0, -5.0]])
    labels = torch.tensor([0, -1, 1])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(hard_ce(logits, labels), expected)


def test_hard_ce_is_zero_with_gradient_when_nothing_is_labelled():
    logits = torch.randn(4, 2, requires_grad=True)
    loss = hard_ce(logits, torch.full((4,), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_a_regressor_learns_the_teachers_score_and_the_gold_score_by_mse():
    student = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)
    teacher = torch.tensor([[1.5], [2.0], [3.0]])
    assert losses.soft_loss(student, teacher, temperature=2.0).item() == pytest.approx((0.25 + 0 + 1) / 3)
    gold = torch.tensor([0.0, float("nan"), 4.0])  # the second row has no gold score (an augmented row)
    assert losses.hard_loss(student, gold).item() == pytest.approx((1 + 0) / 2)
    none = losses.hard_loss(student, torch.full((3,), float("nan")))
    none.backward()
    assert none.item() == 0.0 and student.grad is not None


def test_logit_mse_is_squared_distance_summed_over_classes():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    assert logit_mse(s, t).item() == pytest.approx(((1 + 4) + (1 + 1)) / 2)
    assert logit_mse(t, t).item() == 0.0


class Identity(torch.nn.Module):
    def forward(self, logits):
        return logits


def test_the_loss_is_the_weighted_sum_of_the_active_terms():
    recipe = Recipe({"a": 2.0, "b": 0.0, "c": 0.5})
    assert recipe.weights == {"a": 2.0, "c": 0.5} and recipe.active("a") and not recipe.active("b")
    out = recipe.output({"a": torch.tensor(3.0), "c": torch.tensor(4.0)})
    assert out["loss"].item() == 2.0 * 3.0 + 0.5 * 4.0 and out["a"].item() == 3.0  # raw terms are reported


def test_tang_terms_are_alpha_ce_plus_one_minus_alpha_mse():
    """Tang et al. 2019, eq. 3, as weights {hard: alpha, logit_mse: 1 - alpha}; weight 0 computes nothing."""
    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    labels = torch.tensor([0, 1, -1, -1, 1, 0])
    ce, mse = hard_ce(s, labels), logit_mse(s, t)

    def loss(**weights):
        return TangRecipe(Identity(), weights).train()(logits=s, labels=labels, teacher_logits=t)

    assert torch.allclose(loss(hard=0.0, logit_mse=1.0)["loss"], mse)
    assert torch.allclose(loss(hard=1.0, logit_mse=0.0)["loss"], ce)
    out = loss(hard=0.3, logit_mse=0.7)
    assert torch.allclose(out["loss"], 0.3 * ce + 0.7 * mse) and set(out) == {"loss", "hard", "logit_mse", "logits"}
    assert "logit_mse" not in loss(hard=1.0, logit_mse=0.0)
    # a dev batch carries no teacher logits: gold-label CE, whatever the weights
    dev = TangRecipe(Identity(), {"logit_mse": 1.0}).eval()(logits=s, labels=labels)
    assert torch.allclose(dev["loss"], ce)


def test_tang_gradient_pulls_student_to_teacher():
    s = torch.zeros(3, 2, requires_grad=True)
    t = torch.tensor([[1.0, -1.0]] * 3)
    TangRecipe(Identity(), {"hard": 0.5, "logit_mse": 0.5}).train()(
        logits=s, labels=torch.full((3,), -1), teacher_logits=t)["loss"].backward()
    assert torch.all(s.grad[:, 0] < 0) and torch.all(s.grad[:, 1] > 0)


def test_losses_compute_in_float32_under_bf16_autocast():
    """Mixed precision runs the models in bf16; the losses themselves must stay exact float32."""
    torch.manual_seed(0)
    s, t = torch.randn(2, 6, 8).bfloat16(), torch.randn(2, 6, 8).bfloat16()  # bf16 activations
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    reference = losses.relation_kl(s.float(), t.float(), mask, 2), losses.soft_ce(s[:, 0], t[:, 0], 2.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = losses.relation_kl(s, t, mask, 2), losses.soft_ce(s[:, 0], t[:, 0], 2.0)
    for exact, got in zip(reference, mixed):
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(exact.item(), rel=1e-6)


def test_attention_mse_counts_only_the_pairs_the_teachers_layer_sees():
    """A local layer (ModernBERT's window) attends over some pairs only: the others count neither in the sum
    nor in the mean."""
    student, teacher = torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)
    teacher[..., 0, 2] = 9.0  # a pair outside the window
    mask = torch.ones(1, 3)
    seen = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    seen[..., 0, 2] = False
    assert losses.attention_mse(student, teacher, mask, seen).item() == pytest.approx(1.0)
    assert losses.attention_mse(student, teacher, mask).item() == pytest.approx((8 + 81) / 9)
