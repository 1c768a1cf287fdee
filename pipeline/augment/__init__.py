"""Data augmentation methods, one file each: `tang` (Tang et al. 2019: masking, POS-guided replacement,
n-gram sampling) and `tinybert` (Jiao et al. 2020: masked-LM and word-vector replacement).

Stage `augment@METHOD` (one per entry of `augment.methods`) turns the prepared train rows into augmented
rows {text, text_pair, source_idx} under data/augmented/METHOD; the teacher labels them all in one pass,
and each student names the augmentation it learns from (`augmentation: METHOD`, or null for train rows
only). A method file defines `AUGMENTER = Augmenter(...)` (pipeline/augment/base.py): its params section (`augment.METHOD`) and a
function (texts, pairs, cfg, params) -> (rows, counts).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.augment.base import Augmenter

NAMES = ("tang", "tinybert")  # the files of this package that define an AUGMENTER


def augmenters() -> dict[str, Augmenter]:
    return {name: importlib.import_module(f"{__name__}.{name}").AUGMENTER for name in NAMES}
