"""TinyBERT's augmentation: masked-LM candidates for single-piece words, word-vector neighbours for the
rest, each word replaced with probability p_replace; which masked LM it used, and clear errors."""

import gzip

import numpy as np
import pytest
import torch
from conftest import SST2

from pipeline.augment.tinybert import MaskedLM, TinyBERTConfig, augment, load_mlm, vector_neighbours
from pipeline.errors import ModelError
from pipeline.models.bilstm import glove_vectors
from pipeline.params.config import parse_params
from pipeline.text import split_words


@pytest.fixture(scope="module")
def sst2_texts():
    with gzip.open(SST2 / "train.tsv.gz", "rt", encoding="utf-8") as handle:
        return [line.split("\t")[0] for line in handle.read().splitlines()[1:201]]


@pytest.fixture(scope="module")
def tiny_mlm(tiny_mlm_teacher):
    params = parse_params({"teacher": {"pretrained": str(tiny_mlm_teacher)}})
    return load_mlm(TinyBERTConfig(mlm="teacher"), params)


def test_vector_neighbours_are_the_nearest_by_cosine_and_never_the_word():
    found = vector_neighbours(["movie", "Good", "qqqzzxq"], None, 5)
    assert set(found) == {"movie", "good"}  # looked up lower-cased; an unknown word has none
    vocab, matrix = glove_vectors()
    row = {w: i for i, w in enumerate(vocab)}
    table = np.asarray(matrix, dtype=np.float64)
    query = table[row["movie"]]
    cos = table @ query / (np.linalg.norm(table, axis=1) * np.linalg.norm(query) + 1e-12)
    cos[row["movie"]] = -np.inf
    assert found["movie"] == [vocab[i] for i in np.argsort(-cos)[:5]]
    assert "movie" not in found["movie"] and "film" in found["movie"]


def test_word_vectors_only_replaces_about_p_replace_of_the_words(sst2_texts):
    cfg = TinyBERTConfig(n_iter=8, mlm="none")
    rows, counts = augment(sst2_texts, None, cfg, seed=3, mlm=None, progress=False)
    again, _ = augment(sst2_texts, None, cfg, seed=3, mlm=None, progress=False)
    assert rows == again
    assert counts["candidates_from"] == "word vectors only (no masked LM)" and counts["words_mlm_candidates"] == 0
    assert counts["samples_drawn"] == 8 * 200
    assert counts["kept"] + counts["dropped_duplicate"] + counts["dropped_original"] == counts["samples_drawn"]
    with_candidates = counts["words_vector_candidates"] / counts["words"]
    assert abs(counts["replace_rate"] - 0.4 * with_candidates) < 0.02
    neighbours = vector_neighbours({w for t in sst2_texts for w in split_words(t)}, None, 15)
    for text, idx in zip(rows["text"][:300], rows["source_idx"][:300]):
        source = split_words(sst2_texts[idx])
        out = text.split(" ")
        assert len(out) == len(source)  # words are replaced, never dropped or added
        for new, old in zip(out, source):
            assert new == old or new in neighbours[old.lower()]
    assert not set(rows["text"]) & {" ".join(split_words(t)) for t in sst2_texts}


def test_masked_lm_candidates_are_its_top_k_whole_words_at_the_masked_word(tiny_mlm, tiny_mlm_teacher):
    words = ["a", "gorgeous", ",", "witty", "film"]
    k = 6
    [found] = tiny_mlm.candidates([words], [4], k, batch_size=8, progress=False)
    tok = tiny_mlm.tokenizer
    enc = tok("a gorgeous , witty " + tok.mask_token, return_tensors="pt")
    with torch.no_grad():
        logits = tiny_mlm.model(**enc).logits[0, enc["input_ids"][0].tolist().index(tok.mask_token_id)]
    ranked = [i for i in torch.argsort(logits, descending=True).tolist() if tiny_mlm.allowed[i]]
    expected = [w for w in (tok.convert_ids_to_tokens(i) for i in ranked[:k + 1]) if w != "film"][:k]
    assert found == expected and len(found) == k
    assert not any(w.startswith("##") or w.startswith("[") for w in found)


def test_single_piece_words_use_the_masked_lm_and_the_others_word_vectors(tiny_mlm):
    texts = ["a gorgeous , witty film", "an unwatchable mess of a movie"]
    assert tiny_mlm.single_piece("film") and not tiny_mlm.single_piece("unwatchable")
    rows, counts = augment(texts, None, TinyBERTConfig(n_iter=20, k=4), seed=0, mlm=tiny_mlm, progress=False)
    assert counts["candidates_from"].startswith("masked LM of ")
    single = sum(tiny_mlm.single_piece(w) for t in texts for w in split_words(t))
    assert counts["words_mlm_candidates"] == single and counts["words_vector_candidates"] == 11 - single
    mess = vector_neighbours(["unwatchable"], None, 4)["unwatchable"]
    seen = {out.split(" ")[1] for out, i in zip(rows["text"], rows["source_idx"]) if i == 1}
    assert seen - {"unwatchable"} and seen <= {"unwatchable", *mess}  # a multi-piece word: its GloVe neighbours


def test_pairs_are_augmented_on_both_sides():
    texts, pairs = ["the film is good", "a dull plot"], ["the movie is fine", "boring story"]
    rows, counts = augment(texts, pairs, TinyBERTConfig(n_iter=10, mlm="none"), seed=1, mlm=None, progress=False)
    assert counts["kept"] > 10 and all(rows["text_pair"])
    assert any(t != texts[i] for t, i in zip(rows["text"], rows["source_idx"]))
    assert any(p != pairs[i] for p, i in zip(rows["text_pair"], rows["source_idx"]))


def test_a_teacher_without_a_masked_lm_head_is_an_error_when_asked_for_and_word_vectors_when_auto():
    params = parse_params({})  # the packaged MiniLM: no MLM head
    with pytest.raises(ModelError, match=r"augment.tinybert.mlm: teacher asks for a masked-LM head.*no masked-LM head"):
        load_mlm(TinyBERTConfig(mlm="teacher"), params)
    assert load_mlm(TinyBERTConfig(mlm="auto"), params) is None
    assert load_mlm(TinyBERTConfig(mlm="none"), params) is None


def test_a_named_masked_lm_is_loaded_and_a_missing_one_named_in_the_error(tiny_mlm_teacher, tmp_path):
    params = parse_params({})
    mlm = load_mlm(TinyBERTConfig(mlm=str(tiny_mlm_teacher)), params)
    assert isinstance(mlm, MaskedLM) and mlm.source == str(tiny_mlm_teacher)
    with pytest.raises(ModelError, match="augment.tinybert.mlm: .*does not exist"):
        load_mlm(TinyBERTConfig(mlm=str(tmp_path / "nowhere")), params)
