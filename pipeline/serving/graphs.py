"""ONNX graphs of exported models: the fp32 export, onnxruntime's fused transformer graph, and int8
quantisation.

Fusion (`export.fuse_graph`, on by default): onnxruntime's transformer optimizer rewrites the exported
BERT-style graph with its fused operators (Attention, EmbedLayerNormalization, BiasGelu, LayerNormalization).
It recognises the attention pattern of the eager implementation, so Transformers are exported with eager
attention (same weights, same function). Dynamic int8 quantisation of the fused graph uses the quantised
attention kernel (QAttention). A plain graph is fused too, differently, by onnxruntime itself when a
session loads it (MatMul + Softmax attention, LayerNormalization, BiasGelu).

Neither fuses a residual Add into its LayerNormalization (SkipLayerNormalization): onnxruntime's CPU kernel
for it divides element by element in scalar code, and ran 3.5-5x slower than the Add and the
LayerNormalization it replaces, at batch 1 and 32 alike (pipeline.serving.runtimes.SLOW_FUSIONS).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from pipeline.errors import ModelError
from pipeline.serving.kinds import Feeds

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


def write_int8(fp32: Path, int8: Path, calibration: Sequence[Feeds] | None = None, reduce_range: bool = True) -> None:
    """int8 weights from the fp32 graph, one scale per output channel of each weight where the operator
    allows it (per tensor, the fine-tuned teacher lost 1.7 dev points in int8; per channel 0.5, at the same
    speed; an LSTM keeps one scale per tensor), in 7 bits with `reduce_range` (products that cannot
    saturate on x86 CPUs without VNNI). Dynamic (no `calibration`): activations are quantised on the
    fly, and a fused Attention becomes onnxruntime's quantised QAttention. Static: activation ranges calibrated
    on the `calibration` batches, QDQ around every MatMul (a fused Attention stays fp32)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(calibration or [])

        def get_next(self):
            return next(self.feeds, None)

    # onnxruntime's quantised LSTM takes one scale per weight tensor only
    per_channel = not any(node.op_type == "LSTM" for node in onnx.load(str(fp32)).graph.node)
    try:
        with _quiet_root_logger():
            if calibration is None:
                # fused operators (com.microsoft) have no ONNX shape inference: their outputs are float
                quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=per_channel,
                                 reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
                return
            with tempfile.TemporaryDirectory(dir=int8.parent) as tmp:
                shaped = Path(tmp) / "shaped.onnx"
                # symbolic shape inference knows the fused operators (com.microsoft); ONNX's does the rest
                fused = any(node.domain == "com.microsoft" for node in onnx.load(str(fp32)).graph.node)
                quant_pre_process(str(fp32), str(shaped), skip_optimization=True, skip_symbolic_shape=not fused)
                quantize_static(shaped, int8, Batches(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                                reduce_range=reduce_range)
    except Exception as exc:  # onnxruntime.quantization raises assorted types
        raise ModelError(f"{int8.name}: int8 quantisation failed ({type(exc).__name__}: {exc})") from exc


FUSED_OPERATORS = ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
                   "LayerNormalization")


def fuse(path: Path, hidden: int, heads: int) -> dict[str, int]:
    """Rewrite an fp32 BERT-style graph in place with onnxruntime's fused transformer operators; return
    how many of each it fused."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False  # see the module docstring
    try:
        with _quiet_root_logger():
            model = optimizer.optimize_model(str(path), model_type="bert", num_heads=heads, hidden_size=hidden,
                                             opt_level=0, use_gpu=False, optimization_options=options)
            model.save_model_to_file(str(path))
            stats = model.get_fused_operator_statistics()  # it logs them at INFO too
    except Exception as exc:  # the optimizer raises assorted types
        raise ModelError(f"{path.name}: graph fusion failed ({type(exc).__name__}: {exc})") from exc
    return {op: stats[op] for op in FUSED_OPERATORS if stats.get(op)}

