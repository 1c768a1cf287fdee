"""Word tokens: what augmentation edits and what word-level students look up; the normalised form two
texts are compared in."""

from __future__ import annotations

import re
import unicodedata

MASK = "[MASK]"  # a masked word in augmented text (Tang et al.), whatever the mask token of the tokenizer reading it

_TOKEN = re.compile(r"'\w+|\w+(?:[-']\w+)*|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """Word tokens with case kept; pre-tokenised text (SST-2) comes back as its own tokens."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    """Lower-cased word tokens, the vocabulary units of word-level students."""
    return split_words(text.lower())


def normalised(text: str | None) -> str:
    """A text's letters and digits alone, case-folded (NFKC): "A gorgeous, witty film." and SST-2's
    "a gorgeous , witty film" are the same text."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text or "").casefold() if ch.isalnum())
