"""Data augmentation of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks" (arXiv 1903.12136), section 3.3.

For every word w_i of an example draw X_i ~ U[0, 1]:
  - X_i < p_mask                  -> replace w_i by [MASK];
  - p_mask <= X_i < p_mask + p_pos -> replace w_i by a word with the same POS tag, drawn from the
                                      training set's unigram distribution of words with that tag;
  - otherwise keep w_i.
Then, with probability p_ng, keep only an n-gram of the result, n uniform in 1..ngram_max (a
contiguous span is *sampled*, not masked). This is repeated n_iter times per example; samples equal
to an original training example or to an earlier sample are dropped.

Sentence pairs: both sides go through the same per-word rules with their own draws; the n-gram
decision is drawn once per sample and, when taken, each side keeps its own n-gram. Rows are built
fresh for every sample (no shared mutable state between samples or sides).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator
from tqdm.auto import tqdm

from pipeline.artifacts import open_input
from pipeline.augment.base import AugmentBase, Augmenter, Collector
from pipeline.errors import ConfigError
from pipeline.params.schema import PositiveInt, Probability
from pipeline.text import MASK, split_words

if TYPE_CHECKING:
    from pipeline.params.config import Params



class TangConfig(AugmentBase):
    n_iter: int = Field(5, ge=0, description="augmented samples drawn per example (0: none)")
    max_examples: PositiveInt | None = Field(10000, description="augment only the first N train rows (null: all)")
    p_mask: Probability = Field(0.1, description="per word: probability of replacing it by [MASK]")
    p_pos: Probability = Field(0.1, description="per word: probability of a same-POS-tag replacement")
    p_ng: Probability = Field(0.25, description="per sample: probability of keeping only an n-gram")
    ngram_max: int = Field(5, ge=1, description="n-gram length n is uniform in 1..ngram_max")
    tagset: Literal["ptb", "universal"] = Field("ptb", description="POS tagset used to group replacement words")
    nltk_data: str = Field("data/embedded/nltk_data",
                           description="folder with NLTK's perceptron tagger (nltk_data layout)")

    @model_validator(mode="after")
    def _exclusive_ops(self) -> TangConfig:
        if self.p_mask + self.p_pos > 1.0:
            raise ValueError(f"p_mask + p_pos must be <= 1 (got {self.p_mask} + {self.p_pos})")
        return self


class Tagger:
    """NLTK's English averaged perceptron tagger, loaded once from its files (plain or .gz JSON) under
    `nltk_data` (or a folder of $NLTK_DATA); tags each distinct sentence once. With tagset universal,
    Penn Treebank tags are mapped to the 12 universal tags (en-ptb.map; unknown tags become X)."""

    MODEL = Path("taggers/averaged_perceptron_tagger_eng")
    UNIVERSAL_MAP = Path("taggers/universal_tagset/en-ptb.map")

    def __init__(self, nltk_data: str, tagset: str = "ptb"):
        from nltk.tag import PerceptronTagger

        roots = [Path(nltk_data), *(Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p)]
        root = next((r for r in roots if self._file(r, "weights") is not None), None)
        if root is None:
            raise ConfigError(f"augment.tang.nltk_data: NLTK's averaged_perceptron_tagger_eng was not found under "
                              f"{nltk_data!r} (or NLTK_DATA): expected {self.MODEL}/"
                              "averaged_perceptron_tagger_eng.{weights,tagdict,classes}.json[.gz]")
        self._tagger = PerceptronTagger(load=False)
        self._tagger.decode_json_params(self._json(root, part) for part in ("weights", "tagdict", "classes"))
        self._universal: dict[str, str] | None = None
        if tagset == "universal":
            if not (root / self.UNIVERSAL_MAP).is_file():
                raise ConfigError(f"augment.tang.tagset: universal needs {root / self.UNIVERSAL_MAP}")
            lines = (root / self.UNIVERSAL_MAP).read_text(encoding="utf-8").splitlines()
            self._universal = dict(line.strip().split("\t") for line in lines if line.strip())
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    @classmethod
    def _file(cls, root: Path, part: str) -> Path | None:
        name = root / cls.MODEL / f"averaged_perceptron_tagger_eng.{part}.json"
        return next((f for f in (name, name.with_name(name.name + ".gz")) if f.is_file()), None)

    @classmethod
    def _json(cls, root: Path, part: str):
        path = cls._file(root, part)
        if path is None:
            raise ConfigError(f"augment.tang.nltk_data: {root / cls.MODEL} has no {part} file")
        with open_input(path) as handle:
            return json.loads(handle.read().decode("utf-8"))

    def tag(self, tokens: Sequence[str]) -> tuple[str, ...]:
        key = tuple(tokens)
        if key not in self._cache:
            tags = [t for _, t in self._tagger.tag(list(key))]
            if self._universal is not None:
                tags = [self._universal.get(t, "X") for t in tags]
            self._cache[key] = tuple(tags)
        return self._cache[key]

    @property
    def sentences_tagged(self) -> int:
        return len(self._cache)


class TagUnigrams:
    """Per POS tag, the training words with that tag, with repetition: a uniform draw from a tag's
    pool is a draw from the unigram distribution of words with that tag."""

    def __init__(self, tagged: Sequence[tuple[Sequence[str], Sequence[str]]]):
        pools: dict[str, list[str]] = {}
        for tokens, tags in tagged:
            for word, tag in zip(tokens, tags):
                pools.setdefault(tag, []).append(word)
        self.pools = {tag: np.array(words, dtype=object) for tag, words in pools.items()}

    def sample(self, tag: str, rng: np.random.Generator) -> str | None:
        pool = self.pools.get(tag)
        if pool is None or len(pool) == 0:
            return None
        return pool[rng.integers(len(pool))]

    def distribution(self, tag: str) -> dict[str, float]:
        counts = Counter(self.pools.get(tag, ()))
        total = sum(counts.values())
        return {w: c / total for w, c in counts.items()}


@dataclass
class AugmentCounts:
    """Per-word and per-sample operation counts (the kept/dropped counts come from the Collector)."""

    source_examples: int = 0
    words_seen: int = 0
    words_masked: int = 0
    words_pos_replaced: int = 0
    ngram_sampled: int = 0
    sentences_tagged: int = 0

    def as_dict(self, samples_drawn: int) -> dict:
        out = dict(self.__dict__)
        seen = max(self.words_seen, 1)
        out["mask_rate"] = round(self.words_masked / seen, 4)
        out["pos_rate"] = round(self.words_pos_replaced / seen, 4)
        out["ngram_rate"] = round(self.ngram_sampled / max(samples_drawn, 1), 4)
        return out


def mask_and_replace(tokens: Sequence[str], tags: Sequence[str], cfg: TangConfig, unigrams: TagUnigrams,
                     rng: np.random.Generator, counts: AugmentCounts) -> list[str]:
    """The per-word step: masking and POS-guided replacement are mutually exclusive per word."""
    draws = rng.random(len(tokens))
    out = list(tokens)
    for i, x in enumerate(draws):
        if x < cfg.p_mask:
            out[i] = MASK
            counts.words_masked += 1
        elif x < cfg.p_mask + cfg.p_pos:
            word = unigrams.sample(tags[i], rng)
            if word is not None:
                out[i] = word
                counts.words_pos_replaced += 1
    counts.words_seen += len(tokens)
    return out


def sample_ngram(tokens: Sequence[str], ngram_max: int, rng: np.random.Generator) -> list[str]:
    """Keep one contiguous span of n tokens, n uniform in 1..ngram_max (all of it if shorter)."""
    n = int(rng.integers(1, ngram_max + 1))
    if n >= len(tokens):
        return list(tokens)
    start = int(rng.integers(0, len(tokens) - n + 1))
    return list(tokens[start:start + n])


def augment(texts: Sequence[str], pairs: Sequence[str] | None, cfg: TangConfig, seed: int,
            tagger: Tagger | None = None, progress: bool = True) -> tuple[dict[str, list], dict]:
    """Augment examples; returns rows {text, text_pair, source_idx} and the operation counts.

    `texts`/`pairs` are the training examples (pairs None for single-sentence tasks); augmentation
    applies to the first `cfg.max_examples` (all if null), and the tag unigram distribution is
    estimated on those examples (each tagged once either way).
    """
    tagger = tagger or Tagger(cfg.nltk_data, cfg.tagset)
    sides = [texts] if pairs is None else [texts, pairs]
    tokenised = [[split_words(t) for t in side] for side in sides]
    limit = len(texts) if cfg.max_examples is None else min(cfg.max_examples, len(texts))

    tagged = []
    for side in tokenised:
        for tokens in tqdm(side[:limit], desc="POS tagging", unit="sent", disable=not progress, mininterval=2):
            tagged.append((tokens, tagger.tag(tokens)))
    unigrams = TagUnigrams(tagged)

    collector = Collector(texts, pairs, tokenised)
    counts = AugmentCounts()
    rng = np.random.default_rng(seed)
    counts.source_examples = limit

    for idx in tqdm(range(limit), desc="augmenting", unit="ex", disable=not progress, mininterval=2):
        parts_in = [side[idx] for side in tokenised]
        tags_in = [tagger.tag(tokens) for tokens in parts_in]
        for _ in range(cfg.n_iter):
            parts = [mask_and_replace(tok, tag, cfg, unigrams, rng, counts) for tok, tag in zip(parts_in, tags_in)]
            if rng.random() < cfg.p_ng:
                parts = [sample_ngram(p, cfg.ngram_max, rng) for p in parts]
                counts.ngram_sampled += 1
            collector.add(idx, parts)
    counts.sentences_tagged = tagger.sentences_tagged
    return collector.rows, {**counts.as_dict(collector.drawn), **collector.counts()}


def run(texts: Sequence[str], pairs: Sequence[str] | None, cfg: TangConfig, params: Params):
    return augment(texts, pairs, cfg, params.seed)


AUGMENTER = Augmenter(name="tang", title="Tang et al. 2019: masking, POS-guided word replacement, n-gram sampling",
                      config=TangConfig, run=run)
