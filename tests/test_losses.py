import pytest
import torch
import torch.nn.functional as F

from pipeline import losses
from pipeline.losses import hard_ce, logit_mse, tang_kd


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


def test_logit_mse_is_squared_distance_summed_over_classes():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    assert logit_mse(s, t).item() == pytest.approx(((1 + 4) + (1 + 1)) / 2)
    assert logit_mse(t, t).item() == 0.0


def test_tang_kd_mixes_by_alpha():
    torch.manual_seed(0)
    s, t = torch.randn(6, 2), torch.randn(6, 2)
    labels = torch.tensor([0, 1, -1, -1, 1, 0])
    ce, mse = hard_ce(s, labels), logit_mse(s, t)
    assert torch.allclose(tang_kd(s, t, labels, 0.0), mse)
    assert torch.allclose(tang_kd(s, t, labels, 1.0), ce)
    assert torch.allclose(tang_kd(s, t, labels, 0.3), 0.3 * ce + 0.7 * mse)
    assert torch.allclose(tang_kd(s, None, labels, 0.3), ce)  # no teacher: the no-KD baseline


def test_tang_kd_gradient_pulls_student_to_teacher():
    s = torch.zeros(3, 2, requires_grad=True)
    t = torch.tensor([[1.0, -1.0]] * 3)
    tang_kd(s, t, torch.full((3,), -1), 0.5).backward()
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
