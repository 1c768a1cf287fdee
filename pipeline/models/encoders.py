"""Encoder families: one adapter per family saying where its parts are and how to read them, so that
distillation reads any of them the same way: the embedding output, each layer and its query, key and
value projections, the pre-softmax attention scores, the sizes, the classifier's output layer.
Nothing else in the pipeline names `model.bert`.

- BERT, RoBERTa and XLM-RoBERTa, ELECTRA (factorised embeddings), DistilBERT (no token types);
- DeBERTa-v2/v3: separate query/key/value projections, relative positions (the attention scores add the
  content-to-position and position-to-content terms), often no token types and no absolute positions;
- ModernBERT: one fused QKV projection, rotary positions (queries and keys are read after rotation, as
  the attention sees them), local (sliding-window) and global layers, pre-norm layers with a gated
  feed-forward, no token types;
- ALBERT: one layer shared by every depth (it is read once per depth), factorised embeddings.

A family not here is refused with a message naming its architecture; what a family cannot give a method
(`Family.cannot`) is refused when params are validated, before any stage runs.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pipeline.errors import ModelError

SLICE = "slice"  # what a method may need of a family: its layers cut into a narrower BERT student (teacher_slice)


@dataclass(frozen=True)
class Family:
    """Where a family keeps its parts: attribute paths from the encoder (`body`) or from one layer."""

    body: str  # the encoder's attribute in a task or MLM model (model.bert, model.deberta, model.model, ...)
    layers: str  # the layer list, from the encoder
    query: str | None  # within a layer: the query, key and value projections (None: one fused projection)
    key: str | None
    value: str | None
    attention_out: str  # within a layer: the attention output projection and its LayerNorm
    attention_norm: str
    ffn_in: str  # within a layer: the feed-forward layers and the output LayerNorm
    ffn_out: str
    output_norm: str
    tables: tuple[str, ...] = ("word_embeddings", "position_embeddings", "token_type_embeddings")  # in embeddings
    embedding_norm: str = "embeddings.LayerNorm"  # from the encoder
    project: str | None = None  # from the encoder: a projection of narrower embeddings to the hidden width
    project_after_norm: bool = True  # the projection comes after the embeddings' LayerNorm (ELECTRA, ALBERT)
    positions_from_padding: bool = False  # position ids start after the padding id (RoBERTa)
    head: str = "classifier"  # from a sequence classifier: its output Linear (one row per label)
    fusion: bool = True  # onnxruntime's BERT graph optimizer recognises its exported graph
    per_layer: tuple[str, ...] = ()  # config lists with one entry per layer (kept for the copied layers)
    lacks: dict[str, str] = field(default_factory=dict)  # what it cannot give a method: need -> why

    def cannot(self, need: str) -> str | None:
        """Why this family cannot give `need` (SLICE, ...), or None when it can."""
        return self.lacks.get(need)

    def layer_list(self, encoder: nn.Module, config) -> list[nn.Module]:
        """The layers in the order the forward pass runs them, one per depth."""
        return list(part(encoder, self.layers))

    def depth(self, config) -> int:
        return config.num_hidden_layers

    def copy_layers(self, student: nn.Module, teacher: nn.Module, chosen: list[int]) -> None:
        """Load into `student` (this family, fewer layers) everything the teacher has, and its `chosen`
        layers (0-based) in order."""
        student.load_state_dict(self.copied_state(teacher, chosen))

    def copied_state(self, teacher: nn.Module, chosen: list[int]) -> dict[str, torch.Tensor]:
        """The teacher's state with its layers renumbered: chosen[j] becomes layer j."""
        prefix = f"{self.body}.{self.layers}." if hasattr(teacher, self.body) else f"{self.layers}."
        teacher_state = teacher.state_dict()
        state = {k: v for k, v in teacher_state.items() if not k.startswith(prefix)}
        for j, t in enumerate(chosen):
            src = f"{prefix}{t}."
            state.update({f"{prefix}{j}.{k[len(src):]}": v for k, v in teacher_state.items() if k.startswith(src)})
        return state

    @contextlib.contextmanager
    def capture(self, model: nn.Module) -> Iterator[dict[str, list]]:
        """Record, during forward passes inside the block, each layer's queries, keys and values as the
        attention uses them, (batch, heads, seq, head_dim), one entry per depth.

        Read by forward hooks on the projections (the first call of each per attention pass), not from the
        attention function, so it works with any attention implementation and gives the scores before the
        mask and softmax."""
        store = _store()
        with contextlib.ExitStack() as stack:
            for layer in _unique(layers(model)):
                seen: set[str] = set()
                attention = part(layer, self.query.rsplit(".", 1)[0])  # its forward calls the three projections
                stack.enter_context(_hook(attention, lambda *_, seen=seen: seen.clear(), before=True))
                for kind in ("query", "key", "value"):
                    stack.enter_context(_hook(part(layer, getattr(self, kind)), _first(kind, seen, store, model)))
            yield store


def _store() -> dict[str, list]:
    return {"query": [], "key": [], "value": [], "bias": [], "terms": [], "visible": []}


def _heads(model: nn.Module, output: torch.Tensor) -> torch.Tensor:
    b, s, width = output.shape
    heads = dims(model).heads
    return output.view(b, s, heads, width // heads).transpose(1, 2)


def _first(kind: str, seen: set[str], store: dict[str, list], model: nn.Module):
    """A forward hook recording a projection's output once per attention pass (DeBERTa calls its query and
    key projections again on the relative-position embeddings)."""
    def record(_module, _inputs, output):
        if kind not in seen:
            seen.add(kind)
            store[kind].append(_heads(model, output))
    return record


@contextlib.contextmanager
def _hook(module: nn.Module, fn, before: bool = False) -> Iterator[None]:
    """A forward hook `fn(module, inputs, output)` inside the block; `before`: a pre-hook
    `fn(module, args, kwargs)` that sees the keyword arguments too."""
    handle = module.register_forward_pre_hook(fn, with_kwargs=True) if before else module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()


def _unique(modules: list[nn.Module]) -> list[nn.Module]:
    """Each module once, in first-seen order (ALBERT runs one layer at every depth)."""
    return list({id(m): m for m in modules}.values())


@dataclass(frozen=True)
class DebertaFamily(Family):
    """DeBERTa-v2/v3: the attention scores are (Q K^T + content-to-position + position-to-content terms) over
    sqrt(head_dim x (1 + number of relative terms)); the relative terms are read where the model computes
    them (`disentangled_attention_bias`, wrapped for the block)."""

    @contextlib.contextmanager
    def capture(self, model: nn.Module) -> Iterator[dict[str, list]]:
        with Family.capture(self, model) as store, contextlib.ExitStack() as stack:
            terms = 1 + len({"c2p", "p2c"} & set(getattr(model.config, "pos_att_type", None) or []))
            for layer in _unique(layers(model)):
                attention = part(layer, "attention.self")
                stack.enter_context(_hook(attention, lambda *_: store["terms"].append(terms), before=True))
                if getattr(attention, "relative_attention", False):
                    stack.enter_context(_wrapped_bias(attention, store))
            yield store


@contextlib.contextmanager
def _wrapped_bias(attention: nn.Module, store: dict[str, list]) -> Iterator[None]:
    original = attention.disentangled_attention_bias

    def recording(query_layer, *args, **kwargs):
        bias = original(query_layer, *args, **kwargs)
        store["bias"].append(bias.view(-1, attention.num_attention_heads, *bias.shape[-2:]))
        return bias

    attention.disentangled_attention_bias = recording
    try:
        yield
    finally:
        del attention.disentangled_attention_bias  # the class's method again


@dataclass(frozen=True)
class ModernBertFamily(Family):
    """ModernBERT: Q, K and V come out of one projection (Wqkv); queries and keys are rotated by the
    rotary embedding the layer receives (its cos/sin, read by a pre-hook), with the model's own rotation
    function; a local layer's attention mask (its sliding window) is kept as the pairs it can see."""

    @contextlib.contextmanager
    def capture(self, model: nn.Module) -> Iterator[dict[str, list]]:
        from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

        store = _store()
        current: dict[str, Any] = {}

        def rotary(_module, _args, kwargs):
            current.update(rotary=kwargs.get("position_embeddings"), mask=kwargs.get("attention_mask"))

        def record(_module, _inputs, output):
            q, k, v = (_heads(model, t) for t in output.chunk(3, dim=-1))
            cos, sin = current["rotary"]
            q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1)
            store["query"].append(q)
            store["key"].append(k)
            store["value"].append(v)
            mask = current["mask"]
            store["visible"].append(None if mask is None else mask if mask.dtype == torch.bool else mask == 0)

        with contextlib.ExitStack() as stack:
            for layer in layers(model):
                stack.enter_context(_hook(layer.attn, rotary, before=True))
                stack.enter_context(_hook(part(layer, "attn.Wqkv"), record))
            yield store

    def copy_layers(self, student: nn.Module, teacher: nn.Module, chosen: list[int]) -> None:
        """The first layer has no attention LayerNorm (it reads the normalised embeddings): a teacher layer
        copied there leaves its norm behind, and one copied from there keeps the student's fresh norm."""
        state, own = self.copied_state(teacher, chosen), student.state_dict()
        student.load_state_dict({k: state.get(k, v) for k, v in own.items()})


@dataclass(frozen=True)
class AlbertFamily(Family):
    """ALBERT: the layers of a group are shared by every depth the group covers; the list holds the shared
    module once per depth, so layer i reads (and slices) what depth i runs."""

    def layer_list(self, encoder: nn.Module, config) -> list[nn.Module]:
        groups = part(encoder, self.layers)
        n, g = config.num_hidden_layers, config.num_hidden_groups
        return [layer for i in range(n) for layer in groups[int(i / (n / g))].albert_layers]

    def depth(self, config) -> int:
        return config.num_hidden_layers * config.inner_group_num

    def copy_layers(self, student: nn.Module, teacher: nn.Module, chosen: list[int]) -> None:
        """Shared layers: the student runs the same weights at fewer depths."""
        student.load_state_dict(teacher.state_dict())


_BERT_LAYER = dict(layers="encoder.layer", query="attention.self.query", key="attention.self.key",
                   value="attention.self.value", attention_out="attention.output.dense",
                   attention_norm="attention.output.LayerNorm", ffn_in="intermediate.dense", ffn_out="output.dense",
                   output_norm="output.LayerNorm")
_ROBERTA = dict(body="roberta", positions_from_padding=True, head="classifier.out_proj", **_BERT_LAYER)
_PRE_NORM = ("ModernBERT's layers normalise before attention and feed-forward (pre-norm) and gate the feed-forward, "
             "so they cannot be cut into a BERT student's post-norm layers")
FAMILIES: dict[str, Family] = {
    "bert": Family(body="bert", **_BERT_LAYER),
    "roberta": Family(**_ROBERTA),
    "xlm-roberta": Family(**_ROBERTA),
    "electra": Family(body="electra", project="embeddings_project", head="classifier.out_proj",
                      **_BERT_LAYER),
    "distilbert": Family(body="distilbert", layers="transformer.layer", query="attention.q_lin",
                         key="attention.k_lin", value="attention.v_lin", attention_out="attention.out_lin",
                         attention_norm="sa_layer_norm", ffn_in="ffn.lin1", ffn_out="ffn.lin2",
                         output_norm="output_layer_norm", tables=("word_embeddings", "position_embeddings")),
    "deberta-v2": DebertaFamily(
        body="deberta", layers="encoder.layer", query="attention.self.query_proj",
        key="attention.self.key_proj", value="attention.self.value_proj", attention_out="attention.output.dense",
        attention_norm="attention.output.LayerNorm", ffn_in="intermediate.dense", ffn_out="output.dense",
        output_norm="output.LayerNorm", project="embeddings.embed_proj", project_after_norm=False, fusion=False),
    "modernbert": ModernBertFamily(
        body="model", layers="layers", query=None, key=None, value=None, attention_out="attn.Wo",
        attention_norm="attn_norm", ffn_in="mlp.Wi", ffn_out="mlp.Wo", output_norm="mlp_norm",
        tables=("tok_embeddings",), embedding_norm="embeddings.norm", fusion=False, per_layer=("layer_types",),
        lacks={SLICE: _PRE_NORM}),
    "albert": AlbertFamily(
        body="albert", layers="encoder.albert_layer_groups", query="attention.query", key="attention.key",
        value="attention.value", attention_out="attention.dense", attention_norm="attention.LayerNorm",
        ffn_in="ffn", ffn_out="ffn_output", output_norm="full_layer_layer_norm",
        project="encoder.embedding_hidden_mapping_in"),
}


def supported() -> str:
    return ", ".join(FAMILIES)


def family_of_type(kind: str | None, arch: str = "", key: str = "teacher.pretrained") -> Family:
    """The adapter of a `model_type`; ModelError naming `key` and the architecture when there is none."""
    if kind not in FAMILIES:
        raise ModelError(f"{key}: model type {kind!r} ({arch or kind}) is not supported; supported families: "
                         f"{supported()}")
    return FAMILIES[kind]


def family(model_or_config: Any, key: str = "teacher.pretrained") -> Family:
    """The adapter of a model (or config); ModelError naming the architecture when there is none."""
    config = getattr(model_or_config, "config", model_or_config)
    arch = type(model_or_config).__name__ if hasattr(model_or_config, "config") else \
        ", ".join(getattr(config, "architectures", None) or [str(getattr(config, "model_type", None))])
    return family_of_type(getattr(config, "model_type", None), arch, key)


def part(module: nn.Module, path: str) -> Any:
    for name in path.split("."):
        module = getattr(module, name)
    return module


def maybe_part(module: nn.Module, path: str | None) -> Any:
    """`part`, or None where the path is None or leads to nothing (a DeBERTa without token types)."""
    if path is None:
        return None
    for name in path.split("."):
        module = getattr(module, name, None)
        if module is None:
            return None
    return module


def body(model: nn.Module) -> nn.Module:
    """The encoder inside a task or MLM model (or the model itself when it is one)."""
    return getattr(model, family(model).body, model)


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a model in the order its forward pass runs them, one per depth."""
    enc = body(model)
    return family(model).layer_list(enc, enc.config)


def encoder_input(model: nn.Module) -> nn.Module:
    """The module whose output enters the first layer: the embeddings (after their projection, if any)."""
    enc, fam = body(model), family(model)
    project = maybe_part(enc, fam.project) if fam.project_after_norm else None
    return project if project is not None else enc.embeddings


def head(model: nn.Module) -> nn.Linear:
    """A sequence classifier's output layer: one row of weights per label."""
    return part(model, family(model).head)


def position_offset(config) -> int:
    """Where position ids start: after the padding id for RoBERTa, at 0 elsewhere."""
    return config.pad_token_id + 1 if family(config).positions_from_padding else 0


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    embedding: int  # width of the embedding tables (ELECTRA, ALBERT: narrower than hidden)


def dims(model_or_config: Any) -> Dims:
    config = getattr(model_or_config, "config", model_or_config)
    fam = family(config)
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim")
    return Dims(config.hidden_size, fam.depth(config), config.num_attention_heads, intermediate,
                getattr(config, "embedding_size", None) or config.hidden_size)


def accepted(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs a model's forward takes (DistilBERT and ModernBERT take no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in inputs.items() if k in params}
