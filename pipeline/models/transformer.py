"""Transformer students: building them from params, initialising them from a teacher of any supported
family (pipeline.models.encoders), and reading the internals (hidden states, pre-softmax attention
scores) that the distillation losses need.

Students are BERT-shaped and share the teacher's vocabulary and tokenizer, so one tokenised batch feeds
both; a DistilBERT-style student copies the teacher's own layers and so is of the teacher's family.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import ConfigError, ModelError
from pipeline.models import encoders
from pipeline.models.encoders import FAMILIES, part

log = logging.getLogger(__name__)


# the position table of a student whose teacher has more (ModernBERT: 8,192), unless its inputs are longer
STUDENT_POSITIONS = 512


def student_config(teacher_config, shape, max_length: int = 0, key: str = "general_distill.student"):
    """A BertConfig of `shape` (layers, hidden, heads, intermediate: params' `key`)
    with the teacher's vocabulary, padding id, activation, token types (at least one) and positions (at
    most STUDENT_POSITIONS, or `max_length` where longer, and never more than the teacher has)."""
    from transformers import BertConfig

    if shape.hidden % shape.heads:
        raise ConfigError(f"{key}: hidden size {shape.hidden} is not a multiple of its "
                          f"{shape.heads} heads")
    t = teacher_config
    positions = t.max_position_embeddings - encoders.position_offset(t)
    return BertConfig(
        vocab_size=t.vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=min(positions, max(STUDENT_POSITIONS, max_length)),
        type_vocab_size=max(1, getattr(t, "type_vocab_size", 2)), pad_token_id=t.pad_token_id,
        hidden_act=next((a for a in (getattr(t, k, None) for k in ("hidden_act", "hidden_activation", "activation"))
                         if a), "gelu"),
        layer_norm_eps=getattr(t, "layer_norm_eps", None) or getattr(t, "norm_eps", None) or 1e-12,
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


def init_from_teacher(student: nn.Module, teacher: nn.Module, layers: Sequence[int]) -> None:
    """DistilBERT's initialisation: a student of the teacher's own family and width gets everything the
    teacher has (embeddings, head) and the chosen teacher layers (0-based), in order."""
    if encoders.dims(student).hidden != encoders.dims(teacher).hidden:
        raise ConfigError(f"initialising from teacher layers needs the teacher's width "
                          f"({encoders.dims(teacher).hidden}), the student has {encoders.dims(student).hidden}")
    if len(layers) != encoders.dims(student).layers:
        raise ConfigError(f"{len(layers)} teacher layers given for {encoders.dims(student).layers} student layers")
    encoders.family(teacher).copy_layers(student, teacher, list(layers))


def fewer_layers_config(teacher_config, layers: Sequence[int]):
    """The teacher's config with only the chosen layers (0-based): its family and width, `len(layers)` deep,
    per-layer settings (ModernBERT's local or global attention) those of the chosen layers."""
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    config.num_hidden_layers = len(layers)
    for key in encoders.family(teacher_config).per_layer:
        setattr(config, key, [getattr(teacher_config, key)[i] for i in layers])
    return config


@dataclass
class Internals:
    """What distillation reads from one forward pass of an encoder (pipeline.models.encoders captures it)."""

    hidden: tuple[torch.Tensor, ...]  # embedding output, then each layer's output
    query: list[torch.Tensor]  # per layer, (batch, heads, seq, head_dim), as the attention uses them
    key: list[torch.Tensor]
    value: list[torch.Tensor]
    bias: list[torch.Tensor] = field(default_factory=list)  # per layer: relative-position terms of the scores (DeBERTa)
    terms: list[int] = field(default_factory=list)  # per layer: how many terms the scores are scaled for (DeBERTa)
    visible: list[torch.Tensor | None] = field(default_factory=list)  # per layer: the pairs it sees (local layers)

    def vectors(self, layer: int) -> dict[str, torch.Tensor]:
        """A layer's (0-based) queries, keys and values with the heads concatenated: (batch, seq, width)."""
        def joined(t: torch.Tensor) -> torch.Tensor:
            return t.transpose(1, 2).flatten(2)
        return {"query": joined(self.query[layer]), "key": joined(self.key[layer]), "value": joined(self.value[layer])}

    def scores(self, layer: int) -> torch.Tensor:
        """Pre-softmax attention scores of a layer (0-based), without the mask added: Q K^T / sqrt(d), and for
        DeBERTa its relative-position terms, everything over sqrt(d x the number of terms)."""
        q, k = self.query[layer], self.key[layer]
        if not self.terms:
            return q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        scores = q @ k.transpose(-1, -2) / (q.shape[-1] * self.terms[layer]) ** 0.5
        return scores + self.bias[layer] if self.bias else scores

    def seen(self, layer: int) -> torch.Tensor | None:
        """The query-key pairs a layer (0-based) attends over beyond padding (a local layer's window), or None."""
        return self.visible[layer] if self.visible else None


def forward_internals(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[object, Internals]:
    """model(**batch) with hidden states and Q/K/V of every layer; returns (model output, internals)."""
    with encoders.family(model).capture(model) as store:
        output = model(**encoders.accepted(model, batch), output_hidden_states=True)
    return output, Internals(tuple(output.hidden_states), **store)


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

    handle = encoders.encoder_input(model).register_forward_hook(hook)
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
    body = f"{encoders.family(model).body}."
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(body)]  # the head's, not the encoder's
    if missing:
        raise ModelError(f"{key}: {source!r} has no masked-LM head (missing {', '.join(sorted(missing)[:3])}...); "
                         "the distilbert objective needs a teacher pretrained with MLM (e.g. bert-base-uncased) — "
                         "use objective: tinybert with this teacher")
    return model


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in their original order."""
    return torch.sort(torch.topk(scores, k).indices).values


def slice_from_teacher(student: nn.Module, teacher: nn.Module, layer_map: Sequence[int],
                       key: str = "general_distill.student") -> torch.Tensor:
    """Initialise a narrower BERT student from teacher weights: keep the teacher's most important hidden
    dimensions (by the scale of a LayerNorm over the hidden width), the first student-width / teacher-heads
    dimensions of each teacher head, and the feed-forward units with the largest output weights, of the
    mapped teacher layers (1-based). A student with fewer heads (a divisor of the teacher's) keeps the same
    dimensions, each of its heads made of as many consecutive teacher heads.

    Structured-pruning initialisation: the student starts close to the teacher's function, so a short
    general distillation repairs it instead of learning language from scratch. The teacher may be of any
    family whose layers are BERT's post-norm kind (not ModernBERT's); factorised embeddings (ELECTRA, ALBERT)
    are projected to the hidden width first, which makes the embedding start approximate; a table the
    teacher has not (DeBERTa-v3's absolute positions and token types) keeps the student's initialisation
    (token types: zeros). Returns the kept hidden indices (the student-to-teacher projection starts as
    their scatter back to the teacher width)."""
    s_fam, t_fam = FAMILIES["bert"], encoders.family(teacher)
    if t_fam.cannot(encoders.SLICE):
        raise ConfigError(f"init teacher_slice: {t_fam.cannot(encoders.SLICE)}")
    s_body, t_body = encoders.body(student), encoders.body(teacher)
    s_dims, t_dims = encoders.dims(student), encoders.dims(teacher)
    if t_dims.heads % s_dims.heads or s_dims.hidden % t_dims.heads:
        raise ConfigError(f"slicing from the teacher needs a number of heads that divides the teacher's "
                          f"({t_dims.heads}) and a width that is a multiple of it; the student has {s_dims.heads} "
                          f"heads and width {s_dims.hidden}")
    too_wide = [f"{what} {s} > the teacher's {t}" for what, s, t in (
        ("width", s_dims.hidden, t_dims.hidden), ("feed-forward width", s_dims.intermediate, t_dims.intermediate)) if s > t]
    if too_wide or len(layer_map) != s_dims.layers:
        raise ConfigError("slicing from the teacher needs a student no wider than the teacher and one teacher layer per "
                          f"student layer; the student has {'; '.join(too_wide) or f'{len(layer_map)} mapped layers'} "
                          f"({key})")
    t_layers, s_layers = encoders.layers(teacher), encoders.layers(student)
    project = encoders.maybe_part(t_body, t_fam.project)
    plain_norm = project is not None and t_fam.project_after_norm  # the embeddings' LayerNorm is narrower
    norm = part(t_layers[0], t_fam.attention_norm) if plain_norm else part(t_body, t_fam.embedding_norm)
    hidden = _top(norm.weight.abs(), s_dims.hidden)
    heads, t_hd = t_dims.heads, t_dims.hidden // t_dims.heads
    s_hd = s_dims.hidden // heads
    head_dims = torch.cat([torch.arange(h * t_hd, h * t_hd + s_hd) for h in range(heads)])
    offset = encoders.position_offset(teacher.config)

    def copy(dst: torch.Tensor, src: torch.Tensor, rows=None, cols=None) -> None:
        if rows is not None:
            src = src.index_select(0, rows)
        if cols is not None:
            src = src.index_select(1, cols)
        dst.copy_(src)

    with torch.no_grad():
        for name in s_fam.tables:
            dst = getattr(s_body.embeddings, name).weight
            table = encoders.maybe_part(t_body.embeddings, name) if name in t_fam.tables else None
            if table is None:
                if name == "token_type_embeddings":  # DistilBERT, DeBERTa-v3: no token types, they start at zero
                    dst.zero_()
                continue
            table = table.weight
            if name == "position_embeddings":
                table = table[offset:offset + dst.shape[0]]
            copy(dst, table @ project.weight.T if project is not None else table, cols=hidden)
        s_norm, t_norm = s_body.embeddings.LayerNorm, part(t_body, t_fam.embedding_norm)
        if plain_norm:  # the LayerNorm sits before the projection in the teacher: start plain
            s_norm.weight.fill_(1.0)
            copy(s_norm.bias, project.bias, rows=hidden)
        else:
            copy(s_norm.weight, t_norm.weight, rows=hidden)
            copy(s_norm.bias, t_norm.bias, rows=hidden)
        for s_layer, t_index in zip(s_layers, layer_map, strict=True):
            t_layer = t_layers[t_index - 1]

            def both(name: str):
                return part(s_layer, getattr(s_fam, name)), part(t_layer, getattr(t_fam, name))

            for proj in ("query", "key", "value"):
                s_p, t_p = both(proj)
                copy(s_p.weight, t_p.weight, rows=head_dims, cols=hidden)
                copy(s_p.bias, t_p.bias, rows=head_dims)
            s_p, t_p = both("attention_out")
            copy(s_p.weight, t_p.weight, rows=hidden, cols=head_dims)
            copy(s_p.bias, t_p.bias, rows=hidden)
            (s_in, t_in), (s_out, t_out) = both("ffn_in"), both("ffn_out")
            units = _top(t_out.weight.abs().sum(0), s_dims.intermediate)
            copy(s_in.weight, t_in.weight, rows=units, cols=hidden)
            copy(s_in.bias, t_in.bias, rows=units)
            copy(s_out.weight, t_out.weight, rows=hidden, cols=units)
            copy(s_out.bias, t_out.bias, rows=hidden)
            for name in ("attention_norm", "output_norm"):
                s_n, t_n = both(name)
                copy(s_n.weight, t_n.weight, rows=hidden)
                copy(s_n.bias, t_n.bias, rows=hidden)
        s_head, t_head = getattr(student, "cls", None), getattr(teacher, "cls", None)
        if s_head is not None and t_head is not None:  # BERT masked-LM heads (the decoder is tied to the embeddings)
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


def sliced_projection(proj: nn.Linear, hidden: torch.Tensor, source: Path | None = None) -> None:
    """Start the projection of a student cut to the `hidden` dimensions of a wider model: that model's saved
    projection (PROJECTION_FILE in `source`) restricted to the kept dimensions, or, where it has none (it is
    as wide as the teacher, so its dimensions are the teacher's), the kept dimensions scattered back."""
    from safetensors.torch import load_file

    f = source / PROJECTION_FILE if source is not None else None
    state = load_file(str(f)) if f is not None and f.is_file() else {}
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or bias is None or weight.shape[0] != proj.weight.shape[0] or weight.shape[1] <= int(hidden.max()):
        scatter_projection(proj, hidden)
        return
    with torch.no_grad():
        proj.weight.copy_(weight[:, hidden])
        proj.bias.copy_(bias)


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
            shapes == {k: tuple(v.shape) for k, v in each.state_dict().items()} for each in projection):
        for each in projection:
            each.load_state_dict(state)
    else:
        log.warning("%s: projection shapes %s do not fit; it starts from its initialisation", f, shapes)
