"""Export (PyTorch + ONNX fp32/int8 + card) and the predict CLI, on tiny random models and real
SST-2 / MRPC dev sentences."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import MRPC, ROOT, SST2, tool_env
from onnx import numpy_helper

from pipeline.errors import DataError, ModelError
from pipeline.models.bilstm import BiLSTMClassifier, WordTokenizer, load_bilstm, predict_logits, save_bilstm
from pipeline.serving import export as export_module
from pipeline.serving.export import export_model
from pipeline.serving.predict import main
from pipeline.serving.runtimes import (INT8_FILE, ONNX_FILE, SLOW_FUSIONS, OnnxPredictor, TorchPredictor,
                                       load_export, task_of)
from pipeline.tasks import preset_task
from pipeline.training.inference import classifier_logits

SST2_LABELS = list(preset_task("sst2").labels)


def tsv_columns(path: Path, *columns: str, limit: int = 64) -> list[list[str]]:
    """The first `limit` rows' values of `columns` from a GLUE TSV (no quoting)."""
    from pipeline.artifacts import open_input

    with open_input(path) as handle:
        lines = handle.read().decode("utf-8-sig").splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:limit + 1]]
    return [[row[header.index(c)].strip() for row in rows] for c in columns]


@pytest.fixture(scope="module")
def sst2_dev() -> list[str]:
    (texts,) = tsv_columns(SST2 / "dev.tsv.gz", "sentence")
    return texts


@pytest.fixture(scope="module")
def mrpc_dev() -> tuple[list[str], list[str]]:
    if not MRPC.is_dir():
        pytest.skip("needs ../shared/data (MRPC) beside this checkout")
    first, second = tsv_columns(MRPC / "dev.tsv", "#1 String", "#2 String", limit=32)
    return first, second


def tiny_bilstm(folder: Path, texts: list[str], task: str) -> Path:
    """A random BiLSTM student whose vocabulary covers only part of `texts` (so [UNK] occurs)."""
    torch.manual_seed(0)
    tokenizer = WordTokenizer.build(texts[: len(texts) // 2], max_words=40)
    is_pair = preset_task(task).is_pair
    model = BiLSTMClassifier(len(tokenizer.vocab), embedding_dim=16, hidden=8, dense=8, num_labels=2,
                             is_pair=is_pair, pad_id=tokenizer.pad_id).eval()
    save_bilstm(model, tokenizer, folder, {"task": preset_task(task).to_json(), "labels": list(preset_task(task).labels)})
    return folder


CARD = {"teacher": "tiny random BERT", "data": "SST-2 (GLUE)", "method": "logit regression (MSE)",
        "params": {"hidden": 8, "epochs": 1.0}}


@pytest.fixture(scope="module")
def dev_split():
    """The first 64 SST-2 dev rows as a prepared split (text, text_pair, label), for quality per runtime."""
    import datasets

    texts, labels = tsv_columns(SST2 / "dev.tsv.gz", "sentence", "label")
    return datasets.Dataset.from_dict({"text": texts, "text_pair": [None] * len(texts),
                                       "label": [int(x) for x in labels]})


@pytest.fixture(scope="module")
def hf_export(tiny_teacher, sst2_dev, dev_split, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("exports") / "teacher"
    summary = export_model(tiny_teacher, out, name="teacher", task="sst2", dev_texts=sst2_dev, dev_pairs=None,
                           card_info=CARD, splits={"dev": dev_split})
    return out, summary


@pytest.fixture(scope="module")
def bilstm_student(sst2_dev, tmp_path_factory) -> Path:
    return tiny_bilstm(tmp_path_factory.mktemp("students") / "bilstm", sst2_dev, "sst2")


@pytest.fixture(scope="module")
def bilstm_export(bilstm_student, sst2_dev, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("exports") / "bilstm"
    summary = export_model(bilstm_student, out, name="bilstm", task="sst2", dev_texts=sst2_dev, dev_pairs=None,
                           card_info=CARD)
    return out, summary


@pytest.fixture(scope="module")
def pair_export(mrpc_dev, tmp_path_factory) -> tuple[Path, dict]:
    first, second = mrpc_dev
    student = tiny_bilstm(tmp_path_factory.mktemp("students") / "pair", first + second, "mrpc")
    out = tmp_path_factory.mktemp("exports") / "pair"
    summary = export_model(student, out, name="pair", task=preset_task("mrpc"), dev_texts=first, dev_pairs=second,
                           card_info={})
    return out, summary


# ---------------------------------------------------------------- export: Hugging Face
def test_hf_export_round_trips_through_transformers(hf_export, tiny_teacher, sst2_dev):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out, summary = hf_export
    for name in ("config.json", "model.safetensors", "tokenizer.json", ONNX_FILE, INT8_FILE, "README.md",
                 "export.json"):
        assert (out / name).is_file(), name
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "negative", 1: "positive"}
    source = AutoModelForSequenceClassification.from_pretrained(str(tiny_teacher))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    texts = sst2_dev[:16]
    np.testing.assert_allclose(classifier_logits(model, tokenizer, texts, progress=False),
                               classifier_logits(source, tokenizer, texts, progress=False), atol=1e-6)
    result = pipeline("text-classification", model=str(out))(texts[:2])
    assert [r["label"] in SST2_LABELS for r in result] == [True, True]
    assert summary["onnx"]["max_abs_diff"] <= 1e-4
    assert summary["onnx_inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert json.loads((out / "export.json").read_text())["files"]["model.onnx"] == (out / ONNX_FILE).stat().st_size


def test_hf_onnx_inputs_are_dynamic_and_predictors_agree(hf_export, sst2_dev):
    out, summary = hf_export
    graph = onnx.load(str(out / ONNX_FILE)).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], tensor.name
    lengths = {len(t.split()) for t in sst2_dev}
    assert len(lengths) > 10  # the parity sentences really vary in length
    reference = TorchPredictor("torch", out).logits(sst2_dev, None, 16)
    onnx_logits = load_export(out, "onnx", threads=1).logits(sst2_dev, None, 16)
    assert np.abs(onnx_logits - reference).max() <= 1e-4


def op_counts(path: Path) -> dict[str, int]:
    from collections import Counter

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_the_exported_graph_has_onnxruntimes_fused_operators_and_int8_uses_the_fused_kernels(hf_export):
    out, summary = hf_export  # the tiny teacher: 2 layers
    # residual Adds stay beside their LayerNormalization: onnxruntime's SkipLayerNormalization kernel is slower
    expected = {"EmbedLayerNormalization": 1, "Attention": 2, "LayerNormalization": 4, "BiasGelu": 2}
    assert summary["fused_operators"] == expected
    fp32 = op_counts(out / ONNX_FILE)
    assert all(fp32[op] == n for op, n in expected.items()) and "Softmax" not in fp32  # attention is one kernel
    assert "SkipLayerNormalization" not in fp32
    int8 = op_counts(out / INT8_FILE)
    assert int8["QAttention"] == 2 and int8["DynamicQuantizeMatMul"] + int8["MatMulInteger"] > 0, int8
    assert summary["onnx"]["max_abs_diff"] <= 1e-4  # the fused graph still gives PyTorch's logits


@pytest.fixture(scope="module")
def plain_export(tiny_teacher, sst2_dev, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plain") / "teacher"
    export_model(tiny_teacher, out, name="teacher", task="sst2", dev_texts=sst2_dev, dev_pairs=None, card_info={},
                 fuse_graph=False)
    return out


def test_fuse_graph_false_leaves_the_graph_for_onnxruntime_to_fuse_when_it_loads_it(plain_export):
    assert json.loads((plain_export / "export.json").read_text())["fused_operators"] == {}
    ops = op_counts(plain_export / ONNX_FILE)
    assert ops["Softmax"] == 2 and "Attention" not in ops


@pytest.mark.parametrize("graph", ["fused", "plain"])
def test_sessions_leave_out_the_slow_skip_layer_norm_fusion(graph, hf_export, plain_export, tmp_path, monkeypatch):
    """onnxruntime fuses an int8 graph's residual Add + LayerNormalization into SkipLayerNormalization when
    it loads it, unless told not to; every session of the runtimes is told (the name must be one onnxruntime
    knows: an unknown one is ignored silently)."""
    import onnxruntime as ort

    out = hf_export[0] if graph == "fused" else plain_export
    real = ort.InferenceSession

    def loaded_ops(path, **kwargs):
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / "loaded.onnx")
        real(str(path), opts, providers=["CPUExecutionProvider"], **kwargs)
        return op_counts(tmp_path / "loaded.onnx")

    assert loaded_ops(out / INT8_FILE)["SkipLayerNormalization"] > 0  # onnxruntime's default
    assert loaded_ops(out / INT8_FILE, disabled_optimizers=list(SLOW_FUSIONS))["SkipLayerNormalization"] == 0

    def session(path, opts, **kwargs):
        opts.optimized_model_filepath = str(tmp_path / "served.onnx")
        return real(path, opts, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", session)
    OnnxPredictor("teacher:int8", out, INT8_FILE)
    ops = op_counts(tmp_path / "served.onnx")
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] > 0


@pytest.mark.parametrize("fuse_graph", [False, True])
def test_static_int8_is_calibrated_on_the_given_rows_and_agrees_with_fp32(tiny_teacher, sst2_dev, tmp_path, fuse_graph):
    out = tmp_path / "static"
    summary = export_model(tiny_teacher, out, name="teacher", task="sst2", dev_texts=sst2_dev, dev_pairs=None,
                           card_info={}, int8_calibration=(sst2_dev[:64], None), fuse_graph=fuse_graph)
    assert summary["int8"]["method"] == "static"
    ops = op_counts(out / INT8_FILE)
    # activations quantised with calibrated (constant) scales around every MatMul, not on the fly
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and "DynamicQuantizeLinear" not in ops, ops
    fp32 = load_export(out, "onnx").logits(sst2_dev, None, 16)
    int8 = load_export(out, "int8").logits(sst2_dev, None, 16)
    assert 0 < np.abs(int8 - fp32).max() < 0.05 and np.mean(int8.argmax(-1) == fp32.argmax(-1)) >= 0.95


@pytest.mark.parametrize("failure", ["drop", "fail"])
def test_an_int8_model_losing_too_much_is_left_out_or_fails_the_export(tiny_teacher, sst2_dev, dev_split, tmp_path,
                                                                       monkeypatch, failure):
    measured = export_module.quality

    def int8_worse(predictor, task, splits, per_class=False):  # int8 loses 5 points against fp32
        row = measured(predictor, task, splits, per_class)
        is_int8 = getattr(predictor, "path", Path()).name == INT8_FILE
        return {k: v - 0.05 for k, v in row.items()} if is_int8 else row

    monkeypatch.setattr(export_module, "quality", int8_worse)
    out = tmp_path / "teacher"
    kwargs = dict(name="teacher", task="sst2", dev_texts=sst2_dev, dev_pairs=None, card_info={},
                  splits={"dev": dev_split}, int8_max_drop=1.0, int8_failure=failure)
    if failure == "fail":
        with pytest.raises(ModelError, match=r"teacher: int8 loses 5\.00 points of dev_accuracy against ONNX fp32 .*, "
                                             r"over export.int8_max_drop \(1\)"):
            export_model(tiny_teacher, out, **kwargs)
        assert not out.exists()
        return
    summary = export_model(tiny_teacher, out, **kwargs)
    assert summary["int8"]["served"] is False and summary["int8"]["points_lost"] == 5.0
    assert not (out / INT8_FILE).exists() and (out / ONNX_FILE).exists()
    with pytest.raises(ModelError, match="int8 was left out of this export"):
        load_export(out, "int8")
    assert export_model(tiny_teacher, tmp_path / "ok", **{**kwargs, "int8_max_drop": 6.0})["int8"]["served"]


@pytest.mark.parametrize("task,main", [("sst2", "dev_accuracy"), ("stsb", "dev_pearson")])
@pytest.mark.parametrize("int8,served", [(0.84, True), (0.8399, False), (0.86, True)])
def test_the_int8_gate_measures_the_drop_against_onnx_fp32_and_serves_it_at_the_limit(tmp_path, task, main, int8,
                                                                                       served):
    from pipeline.serving.export import int8_gate

    (tmp_path / INT8_FILE).write_bytes(b"int8")
    # PyTorch scores 5 points above ONNX fp32 here: against it every int8 would lose more than the limit
    measured = {"torch": {main: 0.90}, "onnx": {main: 0.85}, "int8": {main: int8}}
    gate = int8_gate(measured, preset_task(task), tmp_path, "m", 1.0, "drop")
    assert gate["served"] is served and (tmp_path / INT8_FILE).exists() is served
    assert gate["points_lost"] == round(100 * (0.85 - int8), 2)  # 1.00 at the limit is served, 1.01 is not


def int8_weights(path: Path) -> list[np.ndarray]:
    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.data_type == onnx.TensorProto.INT8]


@pytest.mark.parametrize("kind", ["hf", "bilstm"])
def test_int8_weights_take_7_bits_unless_told_8(kind, hf_export, bilstm_export, tmp_path):
    """7-bit weights keep the int8 products clear of saturation on CPUs without VNNI, wherever the
    export was made; export.int8_reduce_range: false gives 8-bit ones."""
    from pipeline.serving.graphs import write_int8

    out, summary = hf_export if kind == "hf" else bilstm_export
    assert summary["int8"]["reduce_range"] is True
    served = int8_weights(out / INT8_FILE)
    assert served and max(int(np.abs(w).max()) for w in served) <= 64
    write_int8(out / ONNX_FILE, tmp_path / "int8.onnx", reduce_range=False)
    assert max(int(np.abs(w).max()) for w in int8_weights(tmp_path / "int8.onnx")) == 127


@pytest.mark.parametrize("kind", ["hf", "bilstm"])
def test_int8_graph_is_quantised_smaller_and_agrees_with_fp32(kind, hf_export, bilstm_export, sst2_dev):
    out, summary = hf_export if kind == "hf" else bilstm_export
    ops = op_counts(out / INT8_FILE)
    assert ops["DynamicQuantizeLinear"] > 0 and ops["MatMulInteger"] > 0, ops  # activations and weights in int8
    assert "MatMulInteger" not in op_counts(out / ONNX_FILE)
    elements: dict[str, int] = {}
    for t in onnx.load(str(out / INT8_FILE)).graph.initializer:
        bits = "8-bit" if t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) else "other"
        elements[bits] = elements.get(bits, 0) + int(np.prod(t.dims))
    assert elements["8-bit"] > 0.9 * sum(elements.values()), elements  # the weights are stored in 8 bits
    # a quarter of the fp32 weights, plus the graph (which weighs more in the 7k-parameter BiLSTM)
    assert (out / INT8_FILE).stat().st_size < {"hf": 0.35, "bilstm": 0.7}[kind] * (out / ONNX_FILE).stat().st_size
    fp32 = load_export(out, "onnx").logits(sst2_dev, None, 16)
    int8 = load_export(out, "int8").logits(sst2_dev, None, 16)
    margins = np.abs(np.diff(np.sort(fp32, -1)[:, -2:], axis=-1))
    assert np.abs(int8 - fp32).max() < 0.1 * margins.mean() + 1e-3  # small against the decisions it could flip
    agreement = float(np.mean(int8.argmax(-1) == fp32.argmax(-1)))
    assert agreement >= 0.95 and summary["int8"]["argmax_agreement_vs_fp32"] >= 0.95


def test_int8_weights_have_a_scale_per_output_channel_except_an_lstm(hf_export, bilstm_export):
    def weight_scales(path):
        graph = onnx.load(str(path)).graph
        init = {t.name: t for t in graph.initializer}
        return [list(init[n.input[3]].dims) for n in graph.node if n.op_type == "MatMulInteger" and n.input[3] in init]

    hf_scales = [dims for dims in weight_scales(hf_export[0] / INT8_FILE)]
    assert hf_scales and all(dims and dims[0] > 1 for dims in hf_scales)  # one zero point per output column
    graph = onnx.load(str(bilstm_export[0] / INT8_FILE)).graph
    assert any(n.op_type == "DynamicQuantizeLSTM" for n in graph.node)  # quantised, one scale per tensor


def test_a_failing_quantisation_is_a_clear_error_and_leaves_no_folder(tiny_teacher, sst2_dev, tmp_path, monkeypatch):
    import onnxruntime.quantization

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", broken)
    with pytest.raises(ModelError, match=r"model\.int8\.onnx: int8 quantisation failed \(RuntimeError: unsupported op"):
        export_model(tiny_teacher, tmp_path / "out", name="x", task="sst2", dev_texts=sst2_dev[:8], dev_pairs=None,
                     card_info={})
    assert list(tmp_path.iterdir()) == []


def test_quality_per_runtime_is_measured_on_what_is_served(hf_export, dev_split):
    from pipeline.serving.export import quality
    from pipeline.tasks import compute_metrics, preset_task

    out, summary = hf_export
    assert set(summary["quality"]) == {"torch", "onnx", "int8"}
    for runtime, row in summary["quality"].items():
        logits = load_export(out, runtime).logits(dev_split["text"], None, 32)
        expected = compute_metrics(preset_task("sst2"), logits, np.asarray(dev_split["label"]))["accuracy"]
        assert row == {"dev_accuracy": round(expected, 4)}, runtime
    unlabelled = dev_split.map(lambda row: {"label": -1})
    assert quality(load_export(out, "torch"), preset_task("sst2"), {"test": unlabelled}) == {}  # skipped, not 0


def test_model_card_says_how_to_load(hf_export, bilstm_export):
    hf_card = (hf_export[0] / "README.md").read_text()
    accuracy = hf_export[1]["quality"]["int8"]["dev_accuracy"]
    for needle in ("# teacher", "tiny random BERT", "logit regression", f"| dev_accuracy (int8) | {accuracy} |",
                   "AutoModelForSequenceClassification", 'pipeline("text-classification"', "onnxruntime",
                   "python -m pipeline predict"):
        assert needle in hf_card, needle
    bilstm_card = (bilstm_export[0] / "README.md").read_text()
    assert "load_bilstm" in bilstm_card and "OnnxPredictor" in bilstm_card and "lengths" in bilstm_card


def test_a_model_card_says_where_its_relative_paths_start():
    from pipeline.serving.card import _usage

    hf = _usage({"kind": "hf", "is_pair": False, "max_length": 128, "folder": "exports/tinybert4"})
    assert hf.startswith("Paths are as seen from the folder that holds `exports/` (the pipeline's repository root)")
    assert 'from_pretrained("exports/tinybert4")' in hf
    bilstm = _usage({"kind": "bilstm", "is_pair": True, "max_length": 128, "folder": "/abs/exports/bilstm_kd",
                     "name": "bilstm_kd", "onnx_inputs": ["input_ids", "lengths"]})
    assert bilstm.startswith("Needs this repository's `pipeline` package") and 'load_bilstm("/abs/exports/bilstm_kd")' in bilstm


def test_the_model_cards_onnx_snippet_gives_the_served_logits(hf_export):
    out, _ = hf_export
    card = (out / "README.md").read_text()
    (snippet,) = [block for block in card.split("```python")[1:] if "onnxruntime as ort" in block.split("```")[0]]
    scope: dict = {}
    exec(snippet.split("```")[0].replace("FOLDER", str(out)), scope)
    expected = load_export(out, "onnx").logits(["a gorgeous film"], None, 1)
    assert np.allclose(scope["logits"], expected, atol=1e-5)


# ---------------------------------------------------------------- export: BiLSTM
def test_bilstm_export_is_self_contained_and_onnx_matches(bilstm_export, bilstm_student, sst2_dev):
    out, summary = bilstm_export
    assert summary["onnx"]["max_abs_diff"] <= 1e-4
    assert summary["onnx_inputs"] == ["input_ids", "lengths"]
    model, tokenizer, config = load_bilstm(out)
    assert config["labels"] == SST2_LABELS and (out / "vocab.txt").is_file()
    original, original_tok, _ = load_bilstm(bilstm_student)
    np.testing.assert_allclose(predict_logits(model, tokenizer, sst2_dev, None, 16),
                               predict_logits(original, original_tok, sst2_dev, None, 16), atol=1e-6)
    token_counts = {len(tokenizer(t)) for t in sst2_dev[:16]}
    assert len(token_counts) > 5  # one batch mixes many lengths: padding must not leak into the states
    reference = TorchPredictor("torch", out).logits(sst2_dev, None, 16)
    logits = OnnxPredictor("onnx", out, ONNX_FILE).logits(sst2_dev, None, 16)
    assert np.abs(logits - reference).max() <= 1e-4


def test_pair_bilstm_export(pair_export, mrpc_dev):
    out, summary = pair_export
    first, second = mrpc_dev
    assert summary["onnx"]["max_abs_diff"] <= 1e-4
    assert summary["onnx_inputs"] == ["input_ids", "lengths", "input_ids_b", "lengths_b"]
    reference = load_export(out, "torch").logits(first, second, 8)
    np.testing.assert_allclose(load_export(out, "onnx").logits(first, second, 8), reference, atol=1e-4)
    with pytest.raises(DataError, match="pair model"):
        load_export(out, "onnx").logits(first, None, 8)


# ---------------------------------------------------------------- export: failures leave nothing behind
def perturbed_write_onnx(original):
    """write_onnx, then noise on the biggest float weight (noise: LayerNorm would cancel a constant shift)."""
    def write(*args):
        original(*args)
        path = args[-1]
        model = onnx.load(str(path))
        init = max((t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
                   key=lambda t: np.prod(t.dims))
        weights = numpy_helper.to_array(init)
        noise = np.random.default_rng(0).normal(0.0, 0.5, weights.shape).astype(weights.dtype)
        init.CopyFrom(numpy_helper.from_array(weights + noise, init.name))
        onnx.save(model, str(path))
    return write


@pytest.mark.parametrize("kind", ["hf", "bilstm"])
def test_parity_failure_raises_and_leaves_no_folder(kind, tiny_teacher, bilstm_student, sst2_dev, tmp_path,
                                                     monkeypatch):
    monkeypatch.setattr(export_module, "write_onnx", perturbed_write_onnx(export_module.write_onnx))
    out = tmp_path / "broken"
    source = tiny_teacher if kind == "hf" else bilstm_student
    with pytest.raises(ModelError, match=r"model\.onnx: ONNX logits differ from PyTorch"):
        export_model(source, out, name="broken", task="sst2", dev_texts=sst2_dev[:16], dev_pairs=None,
                     card_info={})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary folder left either


def test_export_input_errors(tiny_teacher, bilstm_student, sst2_dev, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="dev_pairs"):
        export_model(tiny_teacher, out, name="x", task="mrpc", dev_texts=sst2_dev, dev_pairs=None, card_info={})
    with pytest.raises(DataError, match="dev_texts"):
        export_model(tiny_teacher, out, name="x", task="sst2", dev_texts=[], dev_pairs=None, card_info={})
    with pytest.raises(ModelError, match="does not fit task mrpc"):
        export_model(bilstm_student, out, name="x", task="mrpc", dev_texts=sst2_dev, dev_pairs=sst2_dev,
                     card_info={})
    with pytest.raises(ModelError, match=str(tmp_path / "missing")):
        export_model(tmp_path / "missing", out, name="x", task="sst2", dev_texts=sst2_dev, dev_pairs=None,
                     card_info={})
    assert not out.exists()
    with pytest.raises(ModelError, match="unknown runtime"):
        load_export(bilstm_student, "tensorrt")


# ---------------------------------------------------------------- predict CLI
def run_cli(capsys, monkeypatch, *argv: str, stdin: str | None = None) -> tuple[int, list[str], str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def assert_table_line(line: str, text: str) -> None:
    assert line.split()[0] in SST2_LABELS
    assert "negative=" in line and "positive=" in line and line.endswith(text)


def test_predict_arguments_file_and_stdin(bilstm_export, capsys, monkeypatch, tmp_path):
    out = bilstm_export[0]
    code, lines, _ = run_cli(capsys, monkeypatch, out, "a gorgeous film", "a dull mess")
    assert code == 0 and len(lines) == 2
    assert_table_line(lines[0], "a gorgeous film")
    probs = [float(cell.split("=")[1]) for cell in lines[1].split() if "=" in cell]
    assert sum(probs) == pytest.approx(1.0, abs=1e-3)

    texts = tmp_path / "texts.txt"
    texts.write_text("one fine day\n\nthe worst\nok\n", encoding="utf-8")
    code, lines, _ = run_cli(capsys, monkeypatch, out, "--file", texts, "--runtime", "int8")
    assert code == 0 and len(lines) == 3
    assert_table_line(lines[1], "the worst")

    code, lines, _ = run_cli(capsys, monkeypatch, out, "--runtime", "onnx", stdin="good\nbad\n")
    assert code == 0 and len(lines) == 2


@pytest.mark.parametrize("runtime", ["torch", "onnx", "int8"])
def test_predict_prints_the_argmax_and_softmax_of_the_models_logits(hf_export, capsys, monkeypatch, sst2_dev, runtime):
    out = hf_export[0]
    texts = sst2_dev[:6]
    code, lines, _ = run_cli(capsys, monkeypatch, out, "--json", "--runtime", runtime, "--batch-size", "2", *texts)
    assert code == 0
    records = [json.loads(line) for line in lines]
    expected = load_export(out, runtime).logits(texts, None, 2)  # int8 quantises activations per batch
    assert [r["text"] for r in records] == texts
    np.testing.assert_allclose(np.array([r["logits"] for r in records]), expected, atol=1e-5)
    probs = np.exp(expected - expected.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for record, row, p in zip(records, expected, probs):
        assert record["label"] == SST2_LABELS[int(row.argmax())]
        assert [record["probabilities"][label] for label in SST2_LABELS] == pytest.approx(list(p), abs=1e-6)
    code, lines, _ = run_cli(capsys, monkeypatch, out, "--runtime", runtime, *texts)  # the table says the same
    assert [line.split()[0] for line in lines] == [r["label"] for r in records]


def test_predict_model_folders_directly(tiny_teacher, bilstm_student, capsys, monkeypatch):
    code, lines, _ = run_cli(capsys, monkeypatch, bilstm_student, "--json", "great")
    assert code == 0 and json.loads(lines[0])["label"] in SST2_LABELS
    code, lines, _ = run_cli(capsys, monkeypatch, tiny_teacher, "great")
    assert code == 0 and lines[0].split()[0] in ("LABEL_0", "LABEL_1")  # its config's own labels
    code, _, err = run_cli(capsys, monkeypatch, bilstm_student, "--runtime", "onnx", "great")
    assert code == 2 and err.startswith("error: ") and str(bilstm_student / ONNX_FILE) in err


def test_predict_pairs(pair_export, capsys, monkeypatch, tmp_path):
    out = pair_export[0]
    code, lines, _ = run_cli(capsys, monkeypatch, out, "--json", "He left early .\tHe went home early .")
    assert code == 0 and json.loads(lines[0])["text_pair"] == "He went home early ."
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a b\tc d\nno tab on this line\n", encoding="utf-8")
    code, lines, err = run_cli(capsys, monkeypatch, out, "--file", pairs)
    assert code == 2 and lines == []
    assert f"error: {pairs}:2:" in err and "tab" in err
    code, _, err = run_cli(capsys, monkeypatch, out, "just one text")
    assert code == 2 and "argument 1" in err


def test_predict_a_model_folder_of_a_workspace_knows_its_pair_task(tiny_teacher, capsys, monkeypatch, tmp_path):
    """models/teacher of a pipeline run has no export.json: the task comes from the run's data/prepared."""
    from transformers import AutoConfig

    teacher = tmp_path / "ws" / "models" / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    config = AutoConfig.from_pretrained(teacher)
    config.id2label, config.label2id = {0: "other", 1: "same"}, {"other": 0, "same": 1}
    config.save_pretrained(teacher)
    meta = tmp_path / "ws" / "data" / "prepared" / "meta.json"
    meta.parent.mkdir(parents=True)
    task = {"name": "para", "problem": "classification", "labels": ["other", "same"], "metrics": ["accuracy"],
            "is_pair": True, "raw_labels": ["0", "1"]}
    meta.write_text(json.dumps({"task": task}))
    code, lines, err = run_cli(capsys, monkeypatch, teacher, "--json", "He left early .\tHe went home .")
    assert code == 0 and err == "" and json.loads(lines[0])["text_pair"] == "He went home ."
    # another run's task (other labels) is not this model's: its pairs are not known, and a tab says so
    task["labels"] = ["no", "yes"]
    meta.write_text(json.dumps({"task": task}))
    code, lines, err = run_cli(capsys, monkeypatch, teacher, "--json", "He left early .\tHe went home .", "fine")
    assert code == 0 and "text_pair" not in json.loads(lines[0])
    assert err.startswith(f"warning: as far as {teacher} says, its task reads single texts") and "1 of 2 inputs" in err
    code, lines, err = run_cli(capsys, monkeypatch, teacher, "--pairs", "--json", "He left early .\tHe went home .")
    assert code == 0 and err == "" and json.loads(lines[0])["text_pair"] == "He went home ."
    # a regression model of a pair task of one's own (its config alone cannot say it has pairs)
    config.problem_type, config.num_labels = "regression", 1
    config.save_pretrained(teacher)
    task.update(problem="regression", labels=["score"], metrics=["pearson"], raw_labels=[])
    meta.write_text(json.dumps({"task": task}))
    assert task_of(teacher).is_pair and task_of(teacher).name == "para"


def test_predict_prints_a_regression_models_score_per_input(tiny_teacher, capsys, monkeypatch, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, num_labels=1, problem_type="regression",
                                                               ignore_mismatched_sizes=True).eval()
    folder = tmp_path / "scorer"
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    tokenizer.save_pretrained(folder)
    texts = ["a fine film", "a dull , lifeless mess"]
    with torch.no_grad():
        scores = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits[:, 0].tolist()
    capsys.readouterr()  # the progress of saving it
    code, lines, err = run_cli(capsys, monkeypatch, folder, *texts)
    assert code == 0 and err == ""
    assert lines == [f"score={score:.4f}  {text}" for score, text in zip(scores, texts)]
    code, lines, _ = run_cli(capsys, monkeypatch, folder, "--json", texts[0])
    assert json.loads(lines[0]) == {"text": texts[0], "score": pytest.approx(scores[0], abs=1e-5)}


def test_predict_errors_exit_2_with_a_message(bilstm_export, capsys, monkeypatch, tmp_path):
    out = bilstm_export[0]
    code, lines, err = run_cli(capsys, monkeypatch, out, stdin="\n  \n")
    assert code == 2 and lines == [] and err.startswith("error: no input texts")
    missing = tmp_path / "no_such_export"
    code, _, err = run_cli(capsys, monkeypatch, missing, "text")
    assert code == 2 and str(missing) in err
    code, _, err = run_cli(capsys, monkeypatch, tmp_path, "text")
    assert code == 2 and "not a model or export folder" in err
    code, _, err = run_cli(capsys, monkeypatch, out, "--file", tmp_path / "none.txt")
    assert code == 2 and str(tmp_path / "none.txt") in err
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    code, _, err = run_cli(capsys, monkeypatch, out, "--file", binary)
    assert code == 2 and "not UTF-8" in err


def test_predict_as_a_module(bilstm_export, tmp_path):
    out = bilstm_export[0]
    ok = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(out), "--runtime", "onnx"], input="fine\n",
                        cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].split()[0] in SST2_LABELS
    bad = subprocess.run([sys.executable, "-m", "pipeline", "predict", str(tmp_path / "nowhere"), "x"], cwd=ROOT,
                         env=tool_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"


@pytest.mark.parametrize("argv, message", [
    (["a text", "--file", "{tmp}/texts.txt"], "error: give texts as arguments or with --file, not both"),
    (["--file", "{tmp}"], "is a folder, not a text file"),
])
def test_predict_input_errors(bilstm_export, capsys, monkeypatch, tmp_path, argv, message):
    (tmp_path / "texts.txt").write_text("fine\n", encoding="utf-8")
    code, lines, err = run_cli(capsys, monkeypatch, bilstm_export[0], *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and lines == [] and message.format(tmp=tmp_path) in err and "Traceback" not in err


@pytest.mark.parametrize("line, message", [
    ("a sentence\t", "argument 1: empty text in a pair"),
    ("\tthe second", "argument 1: empty text in a pair"),
    ("one\ttwo\tthree", "argument 1: this model classifies text pairs: expected two tab-separated columns, "
                         "found 3 columns"),
])
def test_predict_pair_line_errors(pair_export, capsys, monkeypatch, line, message):
    code, lines, err = run_cli(capsys, monkeypatch, pair_export[0], line)
    assert code == 2 and lines == [] and message in err


def test_predict_batch_size_must_be_positive(bilstm_export, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(bilstm_export[0]), "--batch-size", "0", "fine"])
    assert exc.value.code == 2 and "--batch-size must be at least 1" in capsys.readouterr().err


def test_the_engines_benchmark_runs_every_export_in_every_engine_with_the_logits_of_pytorch(
        hf_export, bilstm_export, sst2_dev, tmp_path, monkeypatch, capsys):
    from benchmarks import engines

    for folder in (hf_export[0], bilstm_export[0]):
        (tmp_path / folder.name).symlink_to(folder)
    monkeypatch.setattr(engines, "sample_texts", lambda n: (list(sst2_dev[:n]), None))
    engines.main(["--exports", str(tmp_path), "--models", "teacher", "bilstm", "--n", "24", "--n-single", "6",
                  "--batch-sizes", "8", "1", "--rounds", "1", "--threads", "1", "--out", str(tmp_path / "engines.md")])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert [line for line in (tmp_path / "engines.md").read_text().splitlines() if line.startswith("|")] == table
    rows = [line.split(" | ") for line in table if line.startswith(("| teacher", "| bilstm"))]
    got = {(r[0].strip("| "), int(r[1]), r[2]): r for r in rows}
    bf16 = engines.bf16_native(torch.device("cpu"))
    for model in ("teacher", "bilstm"):
        wanted = {"torch fp32", "onnxruntime fp32", "openvino f32"} | (
            {"openvino bf16"} | ({"torch bf16"} if model == "teacher" else set()) if bf16 else set())
        for batch in (8, 1):
            assert {e for (m, b, e) in got if (m, b) == (model, batch)} == wanted
            for engine in wanted:
                row = got[(model, batch, engine)]
                assert float(row[3].replace(",", "")) > 0
                if engine.endswith("32"):  # the same graph or model in float32: the same logits
                    assert float(row[6]) < 1e-4 and row[7].startswith("100.00%"), row


def test_select_stage_serves_the_pick_in_its_runtime(hf_export, bilstm_export, sst2_dev, capsys, monkeypatch, tmp_path):
    """The select stage on a workspace of two exports: the rule picks the BiLSTM in int8; selected/ is its export
    with selection.json, and predict serves it in int8 unless told otherwise. A rule nothing meets fails with
    the keys to change and writes nothing."""
    from pipeline.params.config import Params
    from pipeline.params.profile import render_params

    (tmp_path / "exports").mkdir()
    shutil.copytree(hf_export[0], tmp_path / "exports" / "teacher")
    shutil.copytree(bilstm_export[0], tmp_path / "exports" / "bilstm")
    rows = {}
    for name, value, b1 in (("teacher", 0.80, 10.0), ("teacher:int8", 0.80, 5.0), ("bilstm", 0.795, 2.0),
                            ("bilstm:int8", 0.795, 1.0)):
        model, _, runtime = name.partition(":")
        rows[name] = {"model": model, "runtime": runtime or "torch", "dev_accuracy": value, "latency_ms_b1": b1,
                      "throughput_b32": 3200 / b1, "retention": round(value / 0.80, 4), "speedup_b1": 10.0 / b1,
                      "speedup_throughput": 10.0 / b1}
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(
        {"task": "sst2", "main_metric": "dev_accuracy", "batch_size": 32, "threads": 2, "models": rows}))
    params = Params().model_dump()

    def stage(select: dict) -> subprocess.CompletedProcess:
        (tmp_path / "params.yaml").write_text(render_params(Params.model_validate({**params, "select": select})))
        return subprocess.run([sys.executable, "-m", "stages.select"], cwd=tmp_path, capture_output=True, text=True,
                              env={**tool_env(), "PYTHONPATH": str(ROOT)})

    done = stage({"min_retention": 0.99})
    assert done.returncode == 0, done.stderr
    selected = tmp_path / "selected"
    served = json.loads((selected / "selection.json").read_text())
    assert served["row"] == "bilstm:int8" and served["retention"] == pytest.approx(0.9938)
    assert not [key for key in served if "latency" in key or "speedup" in key]  # the same pick, the same folder
    assert json.loads((tmp_path / "reports" / "selection.json").read_text())["runtime"] == "int8"
    assert (tmp_path / "reports" / "plots" / "frontier.png").stat().st_size > 10_000
    assert "**bilstm:int8**" in (tmp_path / "reports" / "selection.md").read_text()
    texts = sst2_dev[:4]
    code, lines, _ = run_cli(capsys, monkeypatch, selected, "--json", *texts)
    assert code == 0
    served = np.array([json.loads(line)["logits"] for line in lines])
    np.testing.assert_allclose(served, load_export(selected, "int8").logits(texts, None, 32), atol=1e-6)
    assert not np.allclose(served, load_export(selected, "torch").logits(texts, None, 32), atol=1e-5)

    shutil.rmtree(selected)
    failed = stage({"min_retention": 1.0, "runtime": "torch"})
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "no student meets select" in failed.stderr and "select.min_retention" in failed.stderr
    assert not selected.exists()
