"""Teacher families: one adapter per encoder family (BERT, RoBERTa, ELECTRA, DistilBERT) saying where its
parts are, so distillation reads any of them the same way: the embedding output, each layer and its
query/key/value projections, the sizes. Nothing else in the pipeline names `model.bert`.

A family not here is refused with a message naming its architecture.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from pipeline.errors import ModelError


@dataclass(frozen=True)
class Family:
    body: str  # the encoder's attribute in a task or MLM model (model.bert, model.roberta, ...)
    layers: str  # the layer list, from the encoder
    query: str  # within a layer: the query, key and value projections
    key: str
    value: str
    attention_out: str  # within a layer: the attention output projection and its LayerNorm
    attention_norm: str
    ffn_in: str  # within a layer: the feed-forward layers and the output LayerNorm
    ffn_out: str
    output_norm: str
    tables: tuple[str, ...] = ("word_embeddings", "position_embeddings", "token_type_embeddings")
    project: str | None = None  # from the encoder: a projection of narrower embeddings to the hidden width
    positions_from_padding: bool = False  # position ids start after the padding id (RoBERTa)


_BERT_LAYER = dict(layers="encoder.layer", query="attention.self.query", key="attention.self.key",
                   value="attention.self.value", attention_out="attention.output.dense",
                   attention_norm="attention.output.LayerNorm", ffn_in="intermediate.dense", ffn_out="output.dense",
                   output_norm="output.LayerNorm")
FAMILIES = {
    "bert": Family(body="bert", **_BERT_LAYER),
    "roberta": Family(body="roberta", positions_from_padding=True, **_BERT_LAYER),
    "electra": Family(body="electra", project="embeddings_project", **_BERT_LAYER),
    "distilbert": Family(body="distilbert", layers="transformer.layer", query="attention.q_lin", key="attention.k_lin",
                         value="attention.v_lin", attention_out="attention.out_lin", attention_norm="sa_layer_norm",
                         ffn_in="ffn.lin1", ffn_out="ffn.lin2", output_norm="output_layer_norm",
                         tables=("word_embeddings", "position_embeddings")),
}


def family(model_or_config: Any) -> Family:
    """The adapter of a model (or config); ModelError naming the architecture when there is none."""
    config = getattr(model_or_config, "config", model_or_config)
    kind = getattr(config, "model_type", None)
    if kind not in FAMILIES:
        arch = type(model_or_config).__name__ if hasattr(model_or_config, "config") else \
            ", ".join(getattr(config, "architectures", None) or [str(kind)])
        raise ModelError(f"teacher.pretrained: model type {kind!r} ({arch}) is not supported; supported families: "
                         f"{', '.join(FAMILIES)}")
    return FAMILIES[kind]


def part(module: nn.Module, path: str) -> Any:
    for name in path.split("."):
        module = getattr(module, name)
    return module


def body(model: nn.Module) -> nn.Module:
    """The encoder inside a task or MLM model (or the model itself when it is one)."""
    return getattr(model, family(model).body, model)


def layers(model: nn.Module) -> list[nn.Module]:
    return list(part(body(model), family(model).layers))


def encoder_input(model: nn.Module) -> nn.Module:
    """The module whose output enters the first layer: the embeddings (after their projection, if any)."""
    enc, fam = body(model), family(model)
    return getattr(enc, fam.project) if fam.project and hasattr(enc, fam.project) else enc.embeddings


def position_offset(config) -> int:
    """Where position ids start: after the padding id for RoBERTa, at 0 elsewhere."""
    return config.pad_token_id + 1 if family(config).positions_from_padding else 0


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    embedding: int  # width of the embedding tables (ELECTRA: narrower than hidden)


def dims(model_or_config: Any) -> Dims:
    config = getattr(model_or_config, "config", model_or_config)
    family(config)
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "hidden_dim")
    return Dims(config.hidden_size, config.num_hidden_layers, config.num_attention_heads, intermediate,
                getattr(config, "embedding_size", None) or config.hidden_size)


def accepted(model: nn.Module, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs a model's forward takes (DistilBERT takes no token_type_ids)."""
    params = inspect.signature(model.forward).parameters
    return {k: v for k, v in inputs.items() if k in params}
