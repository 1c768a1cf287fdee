from collections import Counter

import numpy as np
import pytest
from conftest import MRPC, NLTK_DATA, SST2, needs_shared

from pipeline.augment.tang import (MASK, AugmentCounts, Tagger, TagUnigrams, TangConfig, augment, mask_and_replace,
                                   sample_ngram)
from pipeline.data.readers import read_raw
from pipeline.errors import ConfigError
from pipeline.params.config import DataConfig
from pipeline.text import split_words


@pytest.fixture(scope="module")
def tagger():
    return Tagger(str(NLTK_DATA))


@pytest.fixture(scope="module")
def sst2_slice():
    rows = read_raw(DataConfig(source=str(SST2), max_train=None))["train"]
    return rows["text"][:300]


def acfg(**kw) -> TangConfig:
    return TangConfig(nltk_data=str(NLTK_DATA), **kw)


def test_ngram_keeps_a_contiguous_span_of_1_to_5():
    rng = np.random.default_rng(0)
    tokens = [f"w{i}" for i in range(12)]
    lengths = Counter()
    for _ in range(2000):
        span = sample_ngram(tokens, 5, rng)
        start = tokens.index(span[0])
        assert span == tokens[start:start + len(span)]
        lengths[len(span)] += 1
    assert set(lengths) == {1, 2, 3, 4, 5}
    assert min(lengths.values()) > 300  # n is uniform in 1..5
    assert sample_ngram(["a", "b"], 5, rng) in (["a"], ["b"], ["a", "b"])


def test_masking_rate_is_near_p_mask():
    cfg = acfg(p_mask=0.3, p_pos=0.0)
    counts = AugmentCounts()
    rng = np.random.default_rng(1)
    tokens = ["word"] * 50
    masked = sum(mask_and_replace(tokens, ["NN"] * 50, cfg, TagUnigrams([]), rng, counts).count(MASK)
                 for _ in range(400))
    n = 50 * 400
    assert abs(masked / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)  # within 4 standard errors
    assert counts.words_masked == masked and counts.words_seen == n


def test_mask_and_pos_are_mutually_exclusive():
    rng = np.random.default_rng(2)
    unigrams = TagUnigrams([(["cat", "dog"], ["NN", "NN"])])
    counts = AugmentCounts()
    out = mask_and_replace(["a"] * 100, ["NN"] * 100, acfg(p_mask=1.0, p_pos=0.0), unigrams, rng, counts)
    assert out == [MASK] * 100 and counts.words_pos_replaced == 0
    out = mask_and_replace(["a"] * 100, ["NN"] * 100, acfg(p_mask=0.0, p_pos=1.0), unigrams, rng, counts)
    assert set(out) <= {"cat", "dog"} and counts.words_pos_replaced == 100


def test_pos_replacement_keeps_the_tag_and_follows_unigram_frequency(tagger, sst2_slice):
    tagged = [(split_words(t), tagger.tag(split_words(t))) for t in sst2_slice]
    unigrams = TagUnigrams(tagged)
    seen_with_tag = {(w, t) for toks, tags in tagged for w, t in zip(toks, tags)}
    rng = np.random.default_rng(3)
    cfg = acfg(p_mask=0.0, p_pos=1.0)
    for tokens, tags in tagged[:100]:
        out = mask_and_replace(tokens, tags, cfg, unigrams, rng, AugmentCounts())
        assert all((w, t) in seen_with_tag for w, t in zip(out, tags))  # same tag, word from the train set
    # unigram frequency within a tag: "the" dominates determiners
    dist = unigrams.distribution("DT")
    draws = Counter(unigrams.sample("DT", rng) for _ in range(3000))
    top = max(dist, key=dist.get)
    assert top == "the" and abs(draws[top] / 3000 - dist[top]) < 0.04


def test_augment_is_deterministic_counts_add_up_and_drops_copies(tagger, sst2_slice):
    cfg = acfg(n_iter=6)
    rows, counts = augment(sst2_slice, None, cfg, seed=7, tagger=tagger, progress=False)
    again, _ = augment(sst2_slice, None, cfg, seed=7, tagger=tagger, progress=False)
    other, _ = augment(sst2_slice, None, cfg, seed=8, tagger=tagger, progress=False)
    assert rows == again and rows != other
    assert counts["samples_drawn"] == 6 * 300
    assert counts["kept"] + counts["dropped_duplicate"] + counts["dropped_original"] == counts["samples_drawn"]
    originals = set(sst2_slice)
    assert len(set(rows["text"])) == len(rows["text"]) and not originals & set(rows["text"])
    assert all(0 <= i < 300 for i in rows["source_idx"]) and rows["text_pair"] == [None] * counts["kept"]
    stats = counts
    assert abs(stats["mask_rate"] - 0.1) < 0.03 and abs(stats["pos_rate"] - 0.1) < 0.03
    assert abs(stats["ngram_rate"] - 0.25) < 0.05


def test_nothing_kept_when_no_operation_applies(tagger, sst2_slice):
    rows, counts = augment(sst2_slice[:20], None, acfg(n_iter=3, p_mask=0, p_pos=0, p_ng=0), seed=0,
                           tagger=tagger, progress=False)
    assert rows["text"] == [] and counts["dropped_original"] == 60


def test_each_unique_sentence_is_tagged_once(tagger):
    calls = Counter()
    inner = tagger._tagger.tag

    class Counting:
        def tag(self, tokens):
            calls[tuple(tokens)] += 1
            return inner(tokens)

    fresh = Tagger(str(NLTK_DATA))
    fresh._tagger = Counting()
    texts = ["a fine film", "a fine film", "a dull film"] * 5
    augment(texts, None, acfg(n_iter=4), seed=0, tagger=fresh, progress=False)
    assert set(calls.values()) == {1} and len(calls) == 2


@needs_shared
def test_pairs_are_augmented_on_both_sides_independently(tagger):
    splits = read_raw(DataConfig(task="mrpc", source=str(MRPC), max_train=None))
    texts, pairs = splits["train"]["text"][:40], splits["train"]["text_pair"][:40]
    rows, counts = augment(texts, pairs, acfg(n_iter=5, p_ng=0.0), seed=0, tagger=tagger, progress=False)
    assert counts["kept"] > 150 and all(p for p in rows["text_pair"])
    for text, pair, idx in zip(rows["text"], rows["text_pair"], rows["source_idx"]):
        # without n-gram sampling, each side keeps its own source's length
        assert len(text.split()) == len(split_words(texts[idx]))
        assert len(pair.split()) == len(split_words(pairs[idx]))
    changed_a = sum(t != " ".join(split_words(texts[i])) for t, i in zip(rows["text"], rows["source_idx"]))
    changed_b = sum(p != " ".join(split_words(pairs[i])) for p, i in zip(rows["text_pair"], rows["source_idx"]))
    assert changed_a > 0.5 * counts["kept"] and changed_b > 0.5 * counts["kept"]
    assert texts == splits["train"]["text"][:40]  # inputs untouched


def test_missing_tagger_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NLTK_DATA", raising=False)
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(ConfigError, match="augment.tang.nltk_data: NLTK's averaged_perceptron_tagger_eng was not found"):
        Tagger(str(tmp_path))


def test_no_word_is_both_masked_and_replaced_at_half_and_half():
    """At p_mask = p_pos = 0.5 every word is either masked or replaced (or kept when its tag has no other
    word): the two operations split the words between them, never both on one."""
    rng = np.random.default_rng(5)
    unigrams = TagUnigrams([(["cat", "dog"], ["NN", "NN"])])
    counts = AugmentCounts()
    tokens = ["w"] * 4000
    out = mask_and_replace(tokens, ["NN"] * 4000, acfg(p_mask=0.5, p_pos=0.5), unigrams, rng, counts)
    masked, replaced = out.count(MASK), sum(w in ("cat", "dog") for w in out)
    assert masked + replaced == 4000 and "w" not in out  # each word changed exactly once
    assert counts.words_masked == masked and counts.words_pos_replaced == replaced
    assert abs(masked / 4000 - 0.5) < 0.05


def test_pair_ngram_sampling_keeps_a_span_of_each_side(tagger):
    texts = ["one two three four five six seven eight", "a b c d e f g h i j"]
    pairs = ["alpha beta gamma delta epsilon zeta eta theta", "k l m n o p q r s t"]
    rows, counts = augment(texts, pairs, acfg(n_iter=30, p_mask=0.0, p_pos=0.0, p_ng=1.0, ngram_max=3), seed=0,
                           tagger=tagger, progress=False)
    assert counts["ngram_sampled"] == counts["samples_drawn"] == 60 and counts["kept"] > 0
    for text, pair, idx in zip(rows["text"], rows["text_pair"], rows["source_idx"]):
        for side, source in ((text, texts[idx]), (pair, pairs[idx])):
            assert 1 <= len(side.split()) <= 3 and f" {side} " in f" {source} "  # a contiguous span of its own side
