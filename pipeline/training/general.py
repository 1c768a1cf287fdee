"""General distillation (stage `general_distill@<objective>`): a small BERT learns the *pretrained*
(not fine-tuned) teacher on general text, with the objective a method declares (TinyBERT's layer-wise
MSE, MiniLMv2's Q/K/V relations, DistilBERT's MLM triple loss). The student starts from random weights
or from the teacher's mapped layers cut to its width (`init: teacher_slice`, a structured-pruning
initialisation); two-step students start their step 1 from it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.artifacts import PREPARED, UNLABELLED, load_dataset_dir, open_input, plain_suffix, texts_of
from pipeline.data.batches import token_collator
from pipeline.errors import ConfigError, DataError
from pipeline.methods import objectives
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import load_tokenizer, resolve_pretrained
from pipeline.params.config import GeneralDistillBase
from pipeline.params.schema import declared
from pipeline.tasks import prepared_task
from pipeline.training import driver as training

if TYPE_CHECKING:
    from pipeline.params.config import Params

log = logging.getLogger(__name__)



def params_keys(objective: str) -> list[str]:
    """The params keys general_distill@objective reads (dvc.yaml's `params` of its stage; `${item}` for the
    foreach): the shared keys of general distillation, the objective's own section, and the teacher."""
    shared = [f"general_distill.{k}" for k in GeneralDistillBase.model_fields if k != "objectives"]
    return ["precision", "seed", "teacher.pretrained", *shared, f"general_distill.{objective}"]

def read_corpus(path: Path) -> list[str]:
    """Non-empty lines of a text file, or of every .txt/.raw file in a folder (sorted); gzip-compressed
    ones (.gz) too."""
    files = sorted(f for f in path.rglob("*") if plain_suffix(f) in (".txt", ".raw")) if path.is_dir() else [path]
    if not path.exists():
        raise DataError(f"general_distill.corpus: {path} does not exist")
    if not files:
        raise DataError(f"general_distill.corpus: {path} has no .txt or .raw files")
    lines: list[str] = []
    for f in files:
        try:
            with open_input(f) as handle:
                text = handle.read().decode("utf-8")
            lines += [line.strip() for line in text.splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"{f}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise DataError(f"general_distill.corpus: {path} holds no text")
    return lines


def corpus_sequences(tokenizer, lines: Sequence[str], seq_length: int, limit: int | None, seed: int):
    """The corpus as [CLS] ... [SEP] blocks of seq_length tokens (lines concatenated, then cut)."""
    import datasets

    ids: list[int] = []
    for start in range(0, len(lines), 1000):
        for row in tokenizer(list(lines[start:start + 1000]), add_special_tokens=False, verbose=False)["input_ids"]:
            ids.extend(row)
    body = seq_length - 2
    blocks = [[tokenizer.cls_token_id, *ids[i:i + body], tokenizer.sep_token_id] for i in range(0, len(ids), body)]
    if limit is not None and limit < len(blocks):
        blocks = [blocks[i] for i in sorted(random.Random(seed).sample(range(len(blocks)), limit))]
    return datasets.Dataset.from_dict({"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks],
                                       "token_type_ids": [[0] * len(b) for b in blocks]}), len(ids)


def general_distill(objective: str, params: Params, out: Path, history: Path, checkpoints: Path) -> dict[str, Any]:
    """Train and save the general student of one objective (save_pretrained + tokenizer + the width
    projection when the objective has one); return the stage summary."""
    from transformers import set_seed

    cfg = params.general_distill
    if objective not in cfg.objectives:
        raise ConfigError(f"general_distill.objectives: {objective!r} is not listed (have: {', '.join(cfg.objectives)})")
    spec = objectives()[objective]
    key = "teacher.pretrained"
    source = resolve_pretrained(params.teacher.pretrained, key)
    tokenizer = load_tokenizer(params.teacher.pretrained, key)
    teacher = spec.teacher(source, key)
    t_cfg = encoders.body(teacher).config
    shape = cfg.shape(objective)
    s_config = tfm.student_config(t_cfg, shape, max(cfg.seq_length, params.data.max_length))
    lines = read_corpus(Path(cfg.corpus))
    if cfg.task_text:
        prepared = load_dataset_dir(PREPARED)
        for split in ("train", UNLABELLED):
            if split in prepared:
                texts, pairs = texts_of(prepared[split], prepared_task().is_pair)
                lines += texts + (pairs or [])
    train, n_tokens = corpus_sequences(tokenizer, lines, min(cfg.seq_length, t_cfg.max_position_embeddings),
                                       cfg.max_sequences, params.seed)
    set_seed(params.seed)
    layer_map = tfm.resolve_layer_map(cfg.layer_map, shape.layers, encoders.dims(teacher).layers,
                                      "general_distill.layer_map")
    student, recipe = spec.build(s_config, teacher, getattr(cfg, objective), layer_map, tokenizer)
    projection = getattr(recipe, "projection", None)
    if cfg.init == "teacher_slice":
        kept = tfm.slice_from_teacher(student, teacher, layer_map)
        if projection is not None:
            tfm.scatter_projection(projection, kept)
    log.info("general distillation (%s): %d sequences of <= %d tokens (%d corpus tokens), student %s",
             objective, len(train), cfg.seq_length, n_tokens, shape.model_dump())
    return training.run(training.Job(
        model=recipe, train=train, collate=token_collator(tokenizer), budget=cfg,
        fingerprint=declared(params, params_keys(objective)),
        inputs=[Path(cfg.corpus)] + ([PREPARED] if cfg.task_text else []),
        save=lambda folder: tfm.save_student(student, tokenizer, folder, projection),
        out=out, history=history, checkpoints=checkpoints, group_by_length=False, terms=spec.weights.terms(),
        summary={"objective": objective, "teacher": params.teacher.pretrained, "sequences": len(train),
                 "corpus_tokens": n_tokens, "student_parameters": sum(p.numel() for p in student.parameters()),
                 "init": cfg.init, "layer_map": layer_map}), params)
