"""BERT-architecture students: building them from params, initialising them from a teacher, and
reading the internals (hidden states, pre-softmax attention scores) that the distillation losses need.

Students share the teacher's vocabulary and tokenizer, so one tokenised batch feeds both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


def student_config(teacher_config, shape):
    """A BertConfig of `shape` (layers, hidden, heads, intermediate: params' general_distill.student)
    with the teacher's vocabulary, positions and token types."""
    from transformers import BertConfig

    if shape.hidden % shape.heads:
        raise ConfigError(f"general_distill.student: hidden size {shape.hidden} is not a multiple of its "
                          f"{shape.heads} heads")
    return BertConfig(
        vocab_size=teacher_config.vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=teacher_config.type_vocab_size, pad_token_id=teacher_config.pad_token_id,
        hidden_act=teacher_config.hidden_act, layer_norm_eps=teacher_config.layer_norm_eps,
    )


def resolve_layer_map(layer_map: Sequence[int] | None, student_layers: int, teacher_layers: int,
                      key: str) -> list[int]:
    """The 1-based teacher layer of each student layer: TinyBERT's uniform map when `layer_map` is None,
    else the given map, validated (errors name `key`)."""
    if layer_map is None:
        return uniform_layer_map(student_layers, teacher_layers)
    return check_layer_map(layer_map, student_layers, teacher_layers, key)


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform mapping g(m) = m * N / M (1-based teacher layer for student layer m = 1..M).

    When N / M is not an integer it is rounded half up, so the last student layer always learns from
    the last teacher layer: 6 -> 4 gives [2, 3, 5, 6], 6 -> 3 gives [2, 4, 6], 12 -> 4 gives [3, 6, 9, 12]."""
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"cannot map {student_layers} student layers onto {teacher_layers} teacher layers")
    return [int(m * teacher_layers / student_layers + 0.5) for m in range(1, student_layers + 1)]


def check_layer_map(layer_map: Sequence[int], student_layers: int, teacher_layers: int, key: str) -> list[int]:
    """Validate an explicit mapping (1-based teacher layer per student layer)."""
    layer_map = list(layer_map)
    if len(layer_map) != student_layers:
        raise ConfigError(f"{key}: needs one teacher layer per student layer ({student_layers}), got {layer_map}")
    bad = [t for t in layer_map if not 1 <= t <= teacher_layers]
    if bad:
        raise ConfigError(f"{key}: teacher layers are 1..{teacher_layers}, got {bad}")
    return layer_map


def bert_of(model: nn.Module) -> nn.Module:
    """The BertModel inside a BertFor* head model (or the model itself)."""
    return getattr(model, "bert", model)


def init_from_teacher(student: nn.Module, teacher: nn.Module, layers: Sequence[int]) -> None:
    """DistilBERT's initialisation: copy the embeddings and the chosen teacher layers (0-based) into the
    student's layers in order, plus the pooler and classifier head when both models have them."""
    s_bert, t_bert = bert_of(student), bert_of(teacher)
    if s_bert.config.hidden_size != t_bert.config.hidden_size:
        raise ConfigError(f"initialising from teacher layers needs the teacher's width "
                          f"({t_bert.config.hidden_size}), the student has {s_bert.config.hidden_size}")
    if len(layers) != s_bert.config.num_hidden_layers:
        raise ConfigError(f"{len(layers)} teacher layers given for {s_bert.config.num_hidden_layers} student layers")
    s_bert.embeddings.load_state_dict(t_bert.embeddings.state_dict())
    for s_layer, t_index in zip(s_bert.encoder.layer, layers, strict=True):
        s_layer.load_state_dict(t_bert.encoder.layer[t_index].state_dict())
    for name in ("pooler", "classifier"):
        s_part = getattr(s_bert if name == "pooler" else student, name, None)
        t_part = getattr(t_bert if name == "pooler" else teacher, name, None)
        if s_part is not None and t_part is not None:
            s_part.load_state_dict(t_part.state_dict())


@dataclass
class Internals:
    """What distillation reads from one forward pass of a BERT."""

    hidden: tuple[torch.Tensor, ...]  # embedding output, then each layer's output
    query: list[torch.Tensor]  # per layer, (batch, heads, seq, head_dim)
    key: list[torch.Tensor]
    value: list[torch.Tensor]

    def vectors(self, layer: int) -> dict[str, torch.Tensor]:
        """A layer's (0-based) queries, keys and values with the heads concatenated: (batch, seq, width)."""
        def joined(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).flatten(2)
        return {"query": joined(self.query[layer]), "key": joined(self.key[layer]), "value": joined(self.value[layer])}

    def scores(self, layer: int) -> torch.Tensor:
        """Pre-softmax attention scores Q K^T / sqrt(d) of a layer (0-based), without the mask added."""
        q, k = self.query[layer], self.key[layer]
        return q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5


@contextlib.contextmanager
def capture_qkv(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record each layer's query, key and value projections during forward passes inside the block.

    Read from the projections (forward hooks), not from the attention function, so it works with any
    attention implementation (eager, SDPA) and gives the scores before the mask and softmax."""
    bert = bert_of(model)
    heads = bert.config.num_attention_heads
    store: dict[str, list[torch.Tensor]] = {"query": [], "key": [], "value": []}
    handles = []

    def hook(kind: str):
        def record(_module, _inputs, output):
            b, s, width = output.shape
            store[kind].append(output.view(b, s, heads, width // heads).transpose(1, 2))
        return record

    for layer in bert.encoder.layer:
        attention = layer.attention.self
        for kind in store:
            handles.append(getattr(attention, kind).register_forward_hook(hook(kind)))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def forward_internals(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[object, Internals]:
    """model(**batch) with hidden states and Q/K/V of every layer; returns (model output, internals)."""
    with capture_qkv(model) as store:
        output = model(**batch, output_hidden_states=True)
    return output, Internals(tuple(output.hidden_states), store["query"], store["key"], store["value"])


@contextlib.contextmanager
def embedding_output(model: nn.Module, offset: torch.Tensor | None = None) -> Iterator[list[torch.Tensor]]:
    """Inside the block, forward passes add `offset` (when given) to the embedding layer's output
    (after its LayerNorm and dropout, before the first Transformer layer) and record that output."""
    seen: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if offset is not None:
            output = output + offset.to(output.dtype)
        seen.append(output)
        return output

    handle = bert_of(model).embeddings.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def projection(student_width: int, teacher_width: int) -> nn.Module | None:
    """TinyBERT's learned W_h mapping student width to teacher width (none when they are equal)."""
    return None if student_width == teacher_width else nn.Linear(student_width, teacher_width)


def load_mlm_teacher(source: str, key: str):
    """The teacher with its masked-LM head, or a ModelError when the checkpoint has none."""
    from transformers import AutoModelForMaskedLM

    try:
        model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot load a masked-LM model from {source!r}: {exc}") from None
    missing = [k for k in info.get("missing_keys", []) if "cls." in k or "predictions" in k or "lm_head" in k]
    if missing:
        raise ModelError(f"{key}: {source!r} has no masked-LM head (missing {', '.join(sorted(missing)[:3])}...); "
                         "the distilbert objective needs a teacher pretrained with MLM (e.g. bert-base-uncased) — "
                         "use objective: tinybert with this teacher")
    return model


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in their original order."""
    return torch.sort(torch.topk(scores, k).indices).values


def slice_from_teacher(student: nn.Module, teacher: nn.Module, layer_map: Sequence[int]) -> torch.Tensor:
    """Initialise a narrower student from teacher weights: keep the teacher's most important hidden
    dimensions (by embedding LayerNorm scale), the first `head_dim` dimensions of each head, and the
    feed-forward units with the largest output weights, of the mapped teacher layers (1-based).

    Structured-pruning initialisation: the student starts close to the teacher's function, so a short
    general distillation repairs it instead of learning language from scratch. Returns the kept hidden
    indices (the student-to-teacher projection starts as their scatter back to the teacher width)."""
    s_bert, t_bert = bert_of(student), bert_of(teacher)
    s_cfg, t_cfg = s_bert.config, t_bert.config
    if s_cfg.num_attention_heads != t_cfg.num_attention_heads:
        raise ConfigError("slicing from the teacher needs the teacher's number of heads "
                          f"({t_cfg.num_attention_heads}), the student has {s_cfg.num_attention_heads}")
    if (s_cfg.hidden_size > t_cfg.hidden_size or s_cfg.intermediate_size > t_cfg.intermediate_size
            or len(layer_map) != s_cfg.num_hidden_layers):
        raise ConfigError("slicing from the teacher needs a student no wider than the teacher and one "
                          "teacher layer per student layer")
    hidden = _top(t_bert.embeddings.LayerNorm.weight.abs(), s_cfg.hidden_size)
    heads, t_hd = t_cfg.num_attention_heads, t_cfg.hidden_size // t_cfg.num_attention_heads
    s_hd = s_cfg.hidden_size // heads
    head_dims = torch.cat([torch.arange(h * t_hd, h * t_hd + s_hd) for h in range(heads)])

    def copy(dst: torch.Tensor, src: torch.Tensor, rows=None, cols=None) -> None:
        if rows is not None:
            src = src.index_select(0, rows)
        if cols is not None:
            src = src.index_select(1, cols)
        dst.copy_(src)

    with torch.no_grad():
        for part in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            copy(getattr(s_bert.embeddings, part).weight, getattr(t_bert.embeddings, part).weight, cols=hidden)
        copy(s_bert.embeddings.LayerNorm.weight, t_bert.embeddings.LayerNorm.weight, rows=hidden)
        copy(s_bert.embeddings.LayerNorm.bias, t_bert.embeddings.LayerNorm.bias, rows=hidden)
        for s_layer, t_index in zip(s_bert.encoder.layer, layer_map, strict=True):
            t_layer = t_bert.encoder.layer[t_index - 1]
            s_att, t_att = s_layer.attention, t_layer.attention
            for proj in ("query", "key", "value"):
                copy(getattr(s_att.self, proj).weight, getattr(t_att.self, proj).weight, rows=head_dims, cols=hidden)
                copy(getattr(s_att.self, proj).bias, getattr(t_att.self, proj).bias, rows=head_dims)
            copy(s_att.output.dense.weight, t_att.output.dense.weight, rows=hidden, cols=head_dims)
            copy(s_att.output.dense.bias, t_att.output.dense.bias, rows=hidden)
            units = _top(t_layer.output.dense.weight.abs().sum(0), s_cfg.intermediate_size)
            copy(s_layer.intermediate.dense.weight, t_layer.intermediate.dense.weight, rows=units, cols=hidden)
            copy(s_layer.intermediate.dense.bias, t_layer.intermediate.dense.bias, rows=units)
            copy(s_layer.output.dense.weight, t_layer.output.dense.weight, rows=hidden, cols=units)
            copy(s_layer.output.dense.bias, t_layer.output.dense.bias, rows=hidden)
            for norm_s, norm_t in ((s_att.output.LayerNorm, t_att.output.LayerNorm),
                                   (s_layer.output.LayerNorm, t_layer.output.LayerNorm)):
                copy(norm_s.weight, norm_t.weight, rows=hidden)
                copy(norm_s.bias, norm_t.bias, rows=hidden)
        s_head, t_head = getattr(student, "cls", None), getattr(teacher, "cls", None)
        if s_head is not None and t_head is not None:  # masked-LM heads (the decoder is tied to the embeddings)
            s_tr, t_tr = s_head.predictions.transform, t_head.predictions.transform
            copy(s_tr.dense.weight, t_tr.dense.weight, rows=hidden, cols=hidden)
            copy(s_tr.dense.bias, t_tr.dense.bias, rows=hidden)
            copy(s_tr.LayerNorm.weight, t_tr.LayerNorm.weight, rows=hidden)
            copy(s_tr.LayerNorm.bias, t_tr.LayerNorm.bias, rows=hidden)
            copy(s_head.predictions.bias, t_head.predictions.bias)
    return hidden


def scatter_projection(proj: nn.Linear, hidden: torch.Tensor) -> None:
    """Start a student-to-teacher projection as the inverse of slicing: kept dimensions go back to
    their teacher positions, dropped ones start at zero."""
    with torch.no_grad():
        proj.weight.zero_()
        proj.bias.zero_()
        proj.weight[hidden, torch.arange(len(hidden))] = 1.0


# ---------------------------------------------------------------- saving and reloading students
PROJECTION_FILE = "distill_projection.safetensors"


def save_student(student: nn.Module, tokenizer, folder: Path, projection: nn.Module | None = None) -> None:
    """A Hugging Face folder (save_pretrained + tokenizer), with the learned width projection(s) beside
    it when a later step starts from them."""
    from safetensors.torch import save_file

    student.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if projection is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in projection.state_dict().items()},
                  str(folder / PROJECTION_FILE))


def load_projection(folder: Path, projection: nn.Module | None) -> None:
    """Start the width projection(s) from the one saved with an earlier student (general distillation
    or step 1) when shapes match. A single saved map seeds every per-layer map of a ModuleList."""
    from safetensors.torch import load_file

    f = folder / PROJECTION_FILE
    if projection is None:
        return
    if not f.is_file():
        log.warning("%s: no saved projection; the width projection starts from its initialisation", f)
        return
    state = load_file(str(f))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes == {k: tuple(v.shape) for k, v in projection.state_dict().items()}:
        projection.load_state_dict(state)
    elif isinstance(projection, nn.ModuleList) and all(
            shapes == {k: tuple(v.shape) for k, v in part.state_dict().items()} for part in projection):
        for part in projection:
            part.load_state_dict(state)
    else:
        log.warning("%s: projection shapes %s do not fit; it starts from its initialisation", f, shapes)
