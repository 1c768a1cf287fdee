"""Serving runtimes: PyTorch, ONNX fp32 and ONNX int8 predictors behind one interface, and what they
read from a model or export folder (its config, labels, task, tokenizer).

    predictor = load_export("exports/tinybert4", "int8", threads=2)
    logits = predictor.logits(texts, pairs, batch_size=32)

Every runtime tokenises the same way (Transformers: truncation at max_length, length-bucketed batches;
BiLSTM: its own tokenizer, input-order batches), so their logits are comparable row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pipeline.data.batches import encode, length_buckets, pad_batch
from pipeline.errors import DataError, ModelError
from pipeline.models import bilstm, encoders
from pipeline.tasks import CLASSIFICATION, GLUE, REGRESSION, Task

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SUMMARY_FILE = "export.json"
SELECTION_FILE = "selection.json"  # in selected/: the model and runtime the select stage picked, and why
CARD_FILE = "README.md"
RUNTIMES: dict[str, str | None] = {"torch": None, "onnx": ONNX_FILE, "int8": INT8_FILE}

Feeds = dict[str, np.ndarray]
Batches = Iterator[tuple[np.ndarray, Feeds]]


# ---------------------------------------------------------------- model folder metadata
def read_config(folder: str | Path) -> dict[str, Any]:
    """config.json of a model or export folder, with errors that name the path."""
    folder = Path(folder)
    if not folder.exists():
        raise ModelError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder (expected a model or export folder)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder}: not a model or export folder (no config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{config_file}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{config_file}: expected a JSON object")
    return config


def model_kind(config: dict[str, Any]) -> str:
    """'bilstm' for pipeline.models.bilstm folders, 'hf' for Hugging Face classifiers."""
    return "bilstm" if config.get("arch") == bilstm.ARCH else "hf"


def selected_runtime(folder: str | Path) -> str | None:
    """The runtime the select stage picked for a folder it wrote (its selection.json), or None for any other."""
    path = Path(folder) / SELECTION_FILE
    try:
        runtime = json.loads(path.read_text(encoding="utf-8")).get("runtime") if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    return runtime if runtime in RUNTIMES else None


def export_info(folder: str | Path) -> dict[str, Any]:
    """export.json of an export folder; {} for a plain model folder (or an unreadable summary)."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def task_of(folder: str | Path) -> Task:
    """The task a model or export folder serves: the one export.json records; for a model folder of a
    pipeline workspace (models/teacher, models/students/NAME), the task its prepare stage resolved, if the
    model's outputs are that task's; else what the model's config says (labels, regression or not; pairs
    as a BiLSTM's config records them, or as the GLUE preset of a Hugging Face config's finetuning_task)."""
    config = read_config(folder)
    recorded = export_info(folder).get("task") or config.get("task")
    if isinstance(recorded, dict):
        return Task.from_json(recorded)
    if model_kind(config) == "bilstm":
        n = int(config.get("model", {}).get("num_labels", 2))
        labels = tuple(str(x) for x in config.get("labels") or range(n))
        own = Task(str(recorded or "unknown"), REGRESSION if n == 1 else CLASSIFICATION, labels, (),
                   bool(config.get("model", {}).get("is_pair", False)))
    else:
        regression = config.get("problem_type") == "regression"
        id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
        n = 1 if regression else len(id2label) or int(config.get("num_labels", 2))
        labels = ("score",) if regression else tuple(id2label.get(i, f"LABEL_{i}") for i in range(n))
        name = str(config.get("finetuning_task") or "unknown")
        preset = GLUE.get(name)
        own = Task(name, REGRESSION if regression else CLASSIFICATION, labels, (), bool(preset and preset.pair))
    workspace = _workspace_task(Path(folder))
    if workspace is not None and (workspace.problem, workspace.labels) == (own.problem, own.labels):
        return workspace
    return own


def _workspace_task(folder: Path) -> Task | None:
    """The prepared task of the pipeline workspace whose models/ holds `folder`, if there is one."""
    from pipeline.artifacts import PREPARED
    from pipeline.tasks import prepared_task

    for parent in folder.resolve().parents:
        if parent.name == "models" and (parent.parent / PREPARED / "meta.json").is_file():
            return prepared_task(parent.parent / PREPARED)
    return None


def bilstm_tokenizer(folder: Path, config: dict[str, Any]):
    """A BiLSTM folder's tokenizer without loading its weights (what the ONNX runtime needs)."""
    try:
        kind, max_words = config["tokenizer"]["kind"], config["tokenizer"]["max_words"]
        tokenizer_class = bilstm.TOKENIZERS[kind]
    except (KeyError, TypeError):
        raise ModelError(f"{folder / 'config.json'}: missing or unknown tokenizer settings (key 'tokenizer')") from None
    try:
        return tokenizer_class.load(folder, max_words)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load the BiLSTM tokenizer ({exc})") from None


# ---------------------------------------------------------------- batches: what every runtime is fed
def hf_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int, max_length: int,
               by_length: bool = True) -> Batches:
    """(row indices, padded int64 arrays) per batch, tokenised exactly as classifier_logits does.

    by_length=False keeps input order, so lengths vary inside a batch: the parity check wants that."""
    enc = encode(tokenizer, texts, pairs, max_length)
    lengths = [len(ids) for ids in enc["input_ids"]]
    if by_length:
        groups = length_buckets(lengths, batch_size)
    else:
        groups = [np.arange(i, min(i + batch_size, len(lengths))) for i in range(0, len(lengths), batch_size)]
    for idx in groups:
        yield idx, pad_batch(tokenizer, enc, idx)


def bilstm_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> Batches:
    """The input-order batches of pipeline.models.bilstm.predict_logits, as numpy feeds."""
    for start, stop, inputs in bilstm.batches(tokenizer, texts, pairs, batch_size):
        yield np.arange(start, stop), {k: t.numpy() for k, t in inputs.items()}


# ---------------------------------------------------------------- predictors
class Predictor(Protocol):
    name: str
    folder: Path

    def batches(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> list: ...

    def run(self, feeds: Feeds) -> np.ndarray: ...

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray: ...

    def num_parameters(self) -> int: ...


class Runtime:
    """What every runtime shares: tokenise into batches (`batches`: what a runtime of this model kind is
    fed, the same in every runtime) and compute a batch's logits (`run`); `logits` does both. Timing the
    two apart shows what tokenisation costs."""

    name: str
    folder: Path
    kind: str  # "hf" or "bilstm"
    tokenizer: Any
    is_pair: bool | None  # a BiLSTM knows; a Transformer takes what the caller passes
    max_length: int = 128

    def batches(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> list[tuple[np.ndarray, Feeds]]:
        texts, pairs = list(texts), list(pairs) if pairs is not None else None
        if self.kind == "bilstm":
            if self.is_pair and pairs is None:
                raise DataError(f"{self.folder}: a pair model: every example needs a second text")
            return list(bilstm_batches(self.tokenizer, texts, pairs if self.is_pair else None, batch_size))
        return list(hf_batches(self.tokenizer, texts, pairs, batch_size, self.max_length))

    def run(self, feeds: Feeds) -> np.ndarray:
        raise NotImplementedError

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray:
        out = None
        for idx, feeds in self.batches(texts, pairs, batch_size):
            part = self.run(feeds)
            if out is None:
                out = np.empty((len(texts), part.shape[-1]), dtype=np.float32)
            out[idx] = part
        return out if out is not None else np.empty((0, 0), dtype=np.float32)


class HFPredictor(Runtime):
    """A Hugging Face sequence classifier folder (the teacher, Transformer students) in PyTorch."""

    kind, is_pair = "hf", None

    def __init__(self, name: str, folder: str | Path, max_length: int = 128):
        from pipeline.models.hf import load_classifier, load_tokenizer

        self.name, self.folder, self.max_length = name, Path(folder), max_length
        self.model = load_classifier(str(self.folder), key=name).eval()
        self.tokenizer = load_tokenizer(str(self.folder), key=name)

    @torch.inference_mode()
    def run(self, feeds: Feeds) -> np.ndarray:
        inputs = encoders.accepted(self.model, {k: torch.from_numpy(v) for k, v in feeds.items()})
        return self.model(**inputs).logits.float().numpy()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class BiLSTMPredictor(Runtime):
    """A BiLSTM student folder (pipeline.models.bilstm format) in PyTorch."""

    kind = "bilstm"

    def __init__(self, name: str, folder: str | Path):
        from pipeline.models.bilstm import load_bilstm

        self.name, self.folder = name, Path(folder)
        self.model, self.tokenizer, self.config = load_bilstm(self.folder)
        self.is_pair = bool(self.model.config["is_pair"])

    @torch.inference_mode()
    def run(self, feeds: Feeds) -> np.ndarray:
        return self.model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def load_predictor(name: str, folder: str | Path, max_length: int = 128) -> Predictor:
    """The PyTorch predictor of a model or export folder."""
    folder = Path(folder)
    if model_kind(read_config(folder)) == "bilstm":
        return BiLSTMPredictor(name, folder)
    return HFPredictor(name, folder, max_length)


def weights_size(p: Predictor) -> int:
    """Bytes of what a runtime loads as weights: the ONNX graph, or the PyTorch safetensors file(s)."""
    onnx_path = getattr(p, "path", None)
    if onnx_path is not None:
        return Path(onnx_path).stat().st_size
    return sum(f.stat().st_size for f in Path(p.folder).glob("*.safetensors"))


# onnxruntime's load-time fusions that every session leaves out: Add + LayerNormalization into
# SkipLayerNormalization, whose CPU kernel divides element by element in scalar code (3.5-5x slower than the
# two operators it replaces; int8 graphs ran 1.07-1.09x faster without it, fp32 ones the same)
SLOW_FUSIONS = ("SkipLayerNormFusion",)


def onnx_session(path: Path, threads: int | None = None, fusions_off: Sequence[str] = SLOW_FUSIONS):
    """An onnxruntime CPU session without the load-time fusions `fusions_off`; `threads` sets intra-op threads
    (None: onnxruntime's default)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"{path}: ONNX file not found (not an export folder? make one with pipeline.serving.export)")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no per-session warnings on stderr
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(fusions_off))
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None


def run_session(session, feeds: Feeds) -> np.ndarray:
    """Logits for one batch, feeding exactly the graph's inputs."""
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ModelError(f"the ONNX graph needs inputs {missing} that this tokenisation does not produce")
    return session.run(None, {n: feeds[n] for n in names})[0]


class OnnxPredictor(Runtime):
    """An exported ONNX graph (fp32 or int8) under onnxruntime, fed as the PyTorch predictors are."""

    def __init__(self, name: str, folder: str | Path, onnx_file: str = ONNX_FILE, threads: int | None = None,
                 max_length: int = 128, fusions_off: Sequence[str] = SLOW_FUSIONS):
        self.name, self.folder, self.max_length = name, Path(folder), max_length
        config = read_config(self.folder)
        self.kind = model_kind(config)
        self.path = self.folder / onnx_file
        self.session = onnx_session(self.path, threads, fusions_off)
        if self.kind == "bilstm":
            self.tokenizer = bilstm_tokenizer(self.folder, config)
            self.is_pair = bool(config.get("model", {}).get("is_pair", False))
        else:
            from pipeline.models.hf import load_tokenizer

            self.tokenizer = load_tokenizer(str(self.folder), key=name)
            self.is_pair = None

    def run(self, feeds: Feeds) -> np.ndarray:
        return run_session(self.session, feeds)

    def num_parameters(self) -> int:
        """Elements of the graph's initializers (for int8: the quantised weights plus their scales)."""
        import onnx

        graph = onnx.load(str(self.path)).graph
        return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))


def load_export(folder: str | Path, runtime: str = "torch", *, name: str | None = None,
                threads: int | None = None) -> Predictor:
    """A Predictor for an export folder (or a plain model folder with runtime="torch").

    torch loads the folder with HFPredictor/BiLSTMPredictor; onnx and int8 run model.onnx and
    model.int8.onnx. The default name carries the runtime, so several runtimes can sit in one report."""
    folder = Path(folder)
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    read_config(folder)
    max_length = int(export_info(folder).get("max_length", 128))
    onnx_file = RUNTIMES[runtime]
    left_out = export_info(folder).get("int8", {}).get("left_out") if runtime == "int8" else None
    if left_out:
        raise ModelError(f"{folder}: int8 was left out of this export ({left_out})")
    if onnx_file is None:
        return load_predictor(name or folder.name, folder, max_length)
    return OnnxPredictor(name or f"{folder.name}-{runtime}", folder, onnx_file, threads=threads,
                         max_length=max_length)

