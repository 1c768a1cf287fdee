"""What every augmentation method shares: its params base, its registry entry and the collector of its rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from pipeline.params.schema import PositiveInt, Section

if TYPE_CHECKING:
    from pipeline.params.config import Params


class AugmentBase(Section):
    """Keys every augmentation method has."""

    n_iter: int = Field(10, ge=0, description="augmented samples drawn per example (0: none)")
    max_examples: PositiveInt | None = Field(None, description="augment only the first N train rows (null: all)")


@dataclass(frozen=True)
class Augmenter:
    name: str
    title: str  # for dvc.yaml, the README and model cards
    config: type[AugmentBase]  # its params section, augment.<name>
    run: Callable[[Sequence[str], Sequence[str] | None, Any, Params], tuple[dict[str, list], dict[str, Any]]]
    shared: tuple[str, ...] = ("seed",)  # other params keys it reads


class Collector:
    """The augmented rows of one run: a sample equal to an original example, or to an earlier sample, is
    dropped (and counted); every kept row links to its source example."""

    def __init__(self, texts: Sequence[str], pairs: Sequence[str] | None, words: Sequence[Sequence[Sequence[str]]]):
        """`words`: per side (text, then text_pair), per example, its word tokens."""
        self.is_pair = pairs is not None
        sides = [texts] if pairs is None else [texts, pairs]
        self.originals = {self.key([side[i] for side in words]) for i in range(len(texts))}
        self.originals |= {tuple(s[i].strip() for s in sides) for i in range(len(texts))}
        self.seen: set[tuple[str, ...]] = set()
        self.rows: dict[str, list] = {"text": [], "text_pair": [], "source_idx": []}
        self.drawn = self.dropped_original = self.dropped_duplicate = 0

    @staticmethod
    def key(parts: Sequence[Sequence[str]]) -> tuple[str, ...]:
        return tuple(" ".join(p) for p in parts)

    def add(self, source_idx: int, parts: Sequence[Sequence[str]]) -> None:
        """One sample of example `source_idx`: its sides as word lists."""
        self.drawn += 1
        sample = self.key(parts)
        if sample in self.originals:
            self.dropped_original += 1
        elif sample in self.seen:
            self.dropped_duplicate += 1
        else:
            self.seen.add(sample)
            self.rows["text"].append(sample[0])
            self.rows["text_pair"].append(sample[1] if self.is_pair else None)
            self.rows["source_idx"].append(source_idx)

    def counts(self) -> dict[str, int]:
        return {"samples_drawn": self.drawn, "kept": len(self.rows["text"]),
                "dropped_duplicate": self.dropped_duplicate, "dropped_original": self.dropped_original}
