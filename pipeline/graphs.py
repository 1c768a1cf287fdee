"""ONNX graphs of exported models: the fp32 export, onnxruntime's fused transformer graph, and int8
quantisation.

Fusion: onnxruntime's transformer optimizer rewrites the exported BERT-style graph with its fused
operators (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu). It recognises the
attention pattern of the eager implementation, so Transformers are exported with eager attention (same
weights, same function). Dynamic int8 quantisation of the fused graph then uses the quantised attention
kernel (QAttention), which the unfused graph never reaches.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from pipeline.errors import ModelError

OPSET = 17
EXPORTER = "torch.onnx (TorchScript-based, dynamo=False)"


def write_onnx(module: torch.nn.Module, sample: tuple[torch.Tensor, ...], input_names: list[str],
               dynamic_axes: dict[str, dict[int, str]], path: Path) -> None:
    """fp32 ONNX with dynamic batch and sequence axes."""
    try:
        with warnings.catch_warnings():
            # The exporter's deprecation notice and tracer warnings: the parity check is the real test.
            warnings.simplefilter("ignore")
            torch.onnx.export(module.eval(), sample, str(path), dynamo=False, input_names=input_names,
                              output_names=["logits"], dynamic_axes={**dynamic_axes, "logits": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types; the message says what failed
        raise ModelError(f"{path.name}: ONNX export failed ({type(exc).__name__}: {exc})") from exc


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs advice through the root logger at WARNING."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def write_int8(fp32: Path, int8: Path) -> None:
    """Dynamic int8 quantisation: int8 weights, activations quantised on the fly (CPU-friendly)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet_root_logger():
            # fused operators (com.microsoft) have no ONNX shape inference: their outputs are float
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    except Exception as exc:  # onnxruntime.quantization raises assorted types
        raise ModelError(f"{int8.name}: int8 quantisation failed ({type(exc).__name__}: {exc})") from exc


FUSED_OPERATORS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
                   "LayerNormalization")


def fuse(path: Path, hidden: int, heads: int) -> dict[str, int]:
    """Rewrite an fp32 BERT-style graph in place with onnxruntime's fused transformer operators; return
    how many of each it fused."""
    from onnxruntime.transformers import optimizer

    try:
        with _quiet_root_logger():
            model = optimizer.optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden,
                                             opt_level=0, use_gpu=False)
            model.save_model_to_file(str(path))
    except Exception as exc:  # the optimizer raises assorted types
        raise ModelError(f"{path.name}: graph fusion failed ({type(exc).__name__}: {exc})") from exc
    stats = model.get_fused_operator_statistics()
    return {op: stats[op] for op in FUSED_OPERATORS if stats.get(op)}

