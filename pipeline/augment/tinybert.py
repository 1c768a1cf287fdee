"""Data augmentation of TinyBERT (Jiao et al. 2020, arXiv 1909.10351, section 3.1 and Algorithm 1).

Every word of an example gets K candidate replacements:
  - a word that is a single piece of the masked LM's vocabulary: the K most likely whole-word tokens
    of the masked LM at that position, the word masked;
  - any other word (several pieces, or no masked LM at all): its K nearest neighbours by cosine in the
    word vectors (GloVe); a word the vectors do not know has none and is kept.
Then n_iter samples per example: each word is replaced, with probability p_replace, by one of its
candidates drawn uniformly (the paper: p_t = 0.4, K = 15, N = 20 samples per example on SST-2).
Samples equal to an original example or to an earlier sample are dropped.

One deliberate difference from Algorithm 1: a word's masked-LM candidates are computed once, from the
original sentence with that word masked, not again for every sample from the partly replaced sentence;
that is one masked-LM pass per word instead of n_iter, and the samples differ only by the draws. A
candidate is never the word itself. Pairs: both sides are augmented, each with its own draws.

The masked LM is `mlm`: the pretrained teacher's MLM head (`teacher`; an error names the model when it
has none), a model id or folder of any masked LM, `none` (word vectors for every word), or `auto` (the
teacher's head when it has one, else none). The stage reports which it used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from pipeline.augment.base import AugmentBase, Augmenter, Collector
from pipeline.errors import ModelError
from pipeline.params.schema import PositiveInt, Probability
from pipeline.text import split_words

if TYPE_CHECKING:
    from pipeline.params.config import Params

log = logging.getLogger(__name__)
AUTO, TEACHER, NONE = "auto", "teacher", "none"


class TinyBERTConfig(AugmentBase):
    n_iter: int = Field(10, ge=0, description="augmented samples drawn per example (0: none; the paper: 20)")
    max_examples: PositiveInt | None = Field(10000, description="augment only the first N train rows (null: all)")
    p_replace: Probability = Field(0.4, description="per word: probability of replacing it by one of its candidates")
    k: PositiveInt = Field(15, description="candidates per word (masked-LM top-K, or nearest word vectors)")
    mlm: str = Field(AUTO, description="masked LM for single-piece words: auto (the pretrained teacher's MLM head if "
                                       "it has one, else word vectors for every word), teacher (its MLM head; an "
                                       "error without one), none (word vectors only), or a masked-LM model id or "
                                       "folder")
    vectors_file: str | None = Field(None, description="word vectors for the other words: a GloVe/word2vec text file "
                                                       "(null: the packaged GloVe 6B 50-d)")
    mlm_batch_size: PositiveInt = Field(64, description="masked sentences per masked-LM batch")


class MaskedLM:
    """A masked LM and its tokenizer: which words are single pieces, and each one's top-K candidates."""

    def __init__(self, model, tokenizer, source: str):
        self.model, self.tokenizer, self.source = model.eval(), tokenizer, source
        vocab = tokenizer.get_vocab()
        # byte-level BPE and sentencepiece mark word starts; WordPiece marks continuations with ##
        starts = next((m for m in ("Ġ", "▁") if any(t.startswith(m) for t in vocab)), None)
        self.prefix = " " if starts else ""
        special = set(tokenizer.all_special_ids)
        allowed = torch.zeros(len(tokenizer), dtype=torch.bool)
        self.words: dict[int, str] = {}
        for token, i in vocab.items():
            if i in special or i >= len(allowed) or (token[:1] in "[<" and token[-1:] in "]>"):
                continue
            if (token.startswith(starts) and len(token) > 1) if starts else not token.startswith("##"):
                word = tokenizer.convert_tokens_to_string([token]).strip()
                if word and not any(c.isspace() for c in word):
                    allowed[i] = True
                    self.words[i] = word
        self.allowed = allowed

    def single_piece(self, word: str) -> bool:
        pieces = self.tokenizer.tokenize(self.prefix + word)
        return len(pieces) == 1 and pieces[0] != self.tokenizer.unk_token

    @torch.no_grad()
    def candidates(self, sentences: Sequence[Sequence[str]], positions: Sequence[int], k: int, batch_size: int,
                   progress: bool) -> list[list[str]]:
        """For each (word list, position): the k most likely whole words at that position, masked."""
        tok = self.tokenizer
        masked = [" ".join([*words[:p], tok.mask_token, *words[p + 1:]]) for words, p in zip(sentences, positions)]
        order = np.argsort([len(m) for m in masked], kind="stable")
        out: list[list[str]] = [[] for _ in masked]
        for start in tqdm(range(0, len(order), batch_size), desc="masked-LM candidates", unit="batch",
                          disable=not progress, mininterval=2):
            idx = order[start:start + batch_size]
            enc = tok([masked[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt")
            logits = self.model(**enc).logits.float()
            rows, cols = (enc["input_ids"] == tok.mask_token_id).nonzero(as_tuple=True)
            scores = logits[rows, cols].masked_fill(~self.allowed[: logits.shape[-1]], float("-inf"))
            top = torch.topk(scores, min(k + 1, int(self.allowed.sum())), dim=-1).indices
            for row, ids in zip(rows.tolist(), top.tolist()):
                i = int(idx[row])
                original = sentences[i][positions[i]].lower()
                out[i] = [w for w in (self.words[t] for t in ids) if w.lower() != original][:k]
        return out  # a mask cut off by truncation keeps no candidates


def load_mlm(cfg: TinyBERTConfig, params: Params) -> MaskedLM | None:
    """The masked LM `cfg.mlm` asks for (None: word vectors only)."""
    from pipeline.models.hf import load_tokenizer, resolve_pretrained
    from pipeline.models.transformer import load_mlm_teacher

    if cfg.mlm == NONE:
        return None
    key = "augment.tinybert.mlm"
    spec = params.teacher.pretrained if cfg.mlm in (AUTO, TEACHER) else cfg.mlm
    spec_key = "teacher.pretrained" if cfg.mlm in (AUTO, TEACHER) else key
    source = resolve_pretrained(spec, spec_key)
    try:
        model = load_mlm_teacher(source, spec_key)
    except ModelError as exc:
        if cfg.mlm == AUTO:
            log.info("the teacher %s has no masked-LM head: word vectors give every word's candidates", spec)
            return None
        raise ModelError(f"{key}: {cfg.mlm} asks for a masked-LM head, but {exc}; set {key}: none for word "
                         "vectors only, or name a masked LM (e.g. bert-base-uncased)") from None
    return MaskedLM(model, load_tokenizer(spec, spec_key), spec)


def vector_neighbours(words: Sequence[str], vectors_file: str | None, k: int) -> dict[str, list[str]]:
    """Each word's k nearest neighbours by cosine in the word vectors (looked up lower-cased; words the
    vectors do not know are left out)."""
    from pipeline.models.bilstm import word_vectors

    vocab, matrix = word_vectors(vectors_file)
    row = {w: i for i, w in enumerate(vocab)}
    queries = sorted({w.lower() for w in words if w.lower() in row})
    if not queries:
        return {}
    table = torch.from_numpy(np.array(matrix, dtype=np.float32))
    table = table / table.norm(dim=1, keepdim=True).clamp_min(1e-8)
    found: dict[str, list[str]] = {}
    for start in range(0, len(queries), 256):
        chunk = queries[start:start + 256]
        ids = torch.tensor([row[w] for w in chunk])
        sims = table[ids] @ table.T
        sims[torch.arange(len(chunk)), ids] = float("-inf")  # never the word itself
        for word, top in zip(chunk, torch.topk(sims, k, dim=-1).indices.tolist()):
            found[word] = [vocab[t] for t in top]
    return found


def augment(texts: Sequence[str], pairs: Sequence[str] | None, cfg: TinyBERTConfig, seed: int,
            mlm: MaskedLM | None, progress: bool = True) -> tuple[dict[str, list], dict[str, Any]]:
    """Augment the first `cfg.max_examples` examples (all if null); returns rows {text, text_pair,
    source_idx} and counts (where the candidates came from, words replaced, samples kept and dropped)."""
    sides = [texts] if pairs is None else [texts, pairs]
    words = [[split_words(t) for t in side] for side in sides]
    limit = len(texts) if cfg.max_examples is None else min(cfg.max_examples, len(texts))
    # candidates per (side, example, position): masked LM for single pieces, word vectors for the rest
    slots = [(s, i, p) for s, side in enumerate(words) for i in range(limit) for p in range(len(side[i]))]
    single = {w: mlm.single_piece(w) for w in {words[s][i][p] for s, i, p in slots}} if mlm else {}
    by_mlm = [slot for slot in slots if single.get(words[slot[0]][slot[1]][slot[2]], False)]
    by_vectors = [slot for slot in slots if not single.get(words[slot[0]][slot[1]][slot[2]], False)]
    candidates: dict[tuple[int, int, int], list[str]] = {}
    if by_mlm:
        found = mlm.candidates([words[s][i] for s, i, _ in by_mlm], [p for _, _, p in by_mlm], cfg.k,
                               cfg.mlm_batch_size, progress)
        candidates.update(zip(by_mlm, found))
    neighbours = vector_neighbours([words[s][i][p] for s, i, p in by_vectors], cfg.vectors_file, cfg.k)
    candidates.update({slot: neighbours.get(words[slot[0]][slot[1]][slot[2]].lower(), []) for slot in by_vectors})

    collector = Collector(texts, pairs, words)
    rng = np.random.default_rng(seed)
    replaced = 0
    for idx in tqdm(range(limit), desc="augmenting", unit="ex", disable=not progress, mininterval=2):
        options = [[candidates[(s, idx, p)] for p in range(len(words[s][idx]))] for s in range(len(sides))]
        for _ in range(cfg.n_iter):
            parts = []
            for s, side_options in enumerate(options):
                draws, picks = rng.random(len(side_options)), rng.random(len(side_options))
                out = list(words[s][idx])
                for p, (x, pick, cands) in enumerate(zip(draws, picks, side_options)):
                    if cands and x < cfg.p_replace:
                        out[p] = cands[int(pick * len(cands))]
                        replaced += 1
                parts.append(out)
            collector.add(idx, parts)
    n_words = max(len(slots), 1)
    counts = {
        "candidates_from": f"masked LM of {mlm.source} (single-piece words) + word vectors" if mlm else
                           "word vectors only (no masked LM)",
        "source_examples": limit, "words": len(slots),
        "words_mlm_candidates": sum(1 for slot in by_mlm if candidates[slot]),
        "words_vector_candidates": sum(1 for slot in by_vectors if candidates[slot]),
        "words_without_candidates": sum(1 for slot in slots if not candidates[slot]),
        "words_replaced": replaced,
        "replace_rate": round(replaced / max(n_words * cfg.n_iter, 1), 4),
        **collector.counts(),
    }
    return collector.rows, counts


def run(texts: Sequence[str], pairs: Sequence[str] | None, cfg: TinyBERTConfig, params: Params):
    return augment(texts, pairs, cfg, params.seed, load_mlm(cfg, params))


AUGMENTER = Augmenter(name="tinybert", title="TinyBERT (Jiao et al. 2020): masked-LM and word-vector replacement",
                      config=TinyBERTConfig, run=run, shared=("seed", "teacher.pretrained"))
