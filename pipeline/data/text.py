"""Word tokens: what augmentation edits and what word-level students look up."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"'\w+|\w+(?:[-']\w+)*|[^\w\s]+")


def split_words(text: str) -> list[str]:
    """Word tokens with case kept; pre-tokenised text (SST-2) comes back as its own tokens."""
    return _TOKEN.findall(text)


def words(text: str) -> list[str]:
    """Lower-cased word tokens, the vocabulary units of word-level students."""
    return split_words(text.lower())
