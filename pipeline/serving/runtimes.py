"""Serving runtimes: PyTorch, ONNX fp32 and ONNX int8 predictors behind one interface, and what they
read from a model or export folder (its config, labels, task, tokenizer).

    predictor = load_export("exports/tinybert4", "int8", threads=2)
    logits = predictor.logits(texts, pairs, batch_size=32)

Every runtime tokenises the same way (Transformers: truncation at max_length, length-bucketed batches;
BiLSTM: its own tokenizer, input-order batches), so their logits are comparable row by row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.artifacts import PREPARED
from pipeline.errors import ModelError
from pipeline.serving.kinds import Feeds, ModelKind, kind_of
from pipeline.tasks import Task, prepared_task

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SUMMARY_FILE = "export.json"
SELECTION_FILE = "selection.json"  # in selected/: the model and runtime the select stage picked, and why
CARD_FILE = "README.md"
RUNTIMES: dict[str, str | None] = {"torch": None, "onnx": ONNX_FILE, "int8": INT8_FILE}


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
    own = kind_of(config).task(config, recorded)
    workspace = _workspace_task(Path(folder))
    if workspace is not None and (workspace.problem, workspace.labels) == (own.problem, own.labels):
        return workspace
    return own


def _workspace_task(folder: Path) -> Task | None:
    """The prepared task of the pipeline workspace whose models/ holds `folder`, if there is one."""
    for parent in folder.resolve().parents:
        if parent.name == "models" and (parent.parent / PREPARED / "meta.json").is_file():
            return prepared_task(parent.parent / PREPARED)
    return None


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
    kind: ModelKind
    tokenizer: Any
    is_pair: bool | None  # a BiLSTM knows; a Transformer takes what the caller passes
    max_length: int = 128

    def batches(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> list[tuple[np.ndarray, Feeds]]:
        texts, pairs = list(texts), list(pairs) if pairs is not None else None
        return list(self.kind.batches(self.tokenizer, texts, pairs, batch_size, self.max_length, self.is_pair,
                                      self.folder))

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


class TorchPredictor(Runtime):
    """A model folder (the teacher, a student, an export) in PyTorch."""

    def __init__(self, name: str, folder: str | Path, max_length: int = 128):
        self.name, self.folder, self.max_length = name, Path(folder), max_length
        self.kind = kind_of(read_config(self.folder))
        self.model, self.tokenizer, self.is_pair = self.kind.load(self.folder, name)

    def run(self, feeds: Feeds) -> np.ndarray:
        return self.kind.forward(self.model, feeds)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


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
        self.kind = kind_of(config)
        self.path = self.folder / onnx_file
        self.session = onnx_session(self.path, threads, fusions_off)
        self.tokenizer, self.is_pair = self.kind.tokenizer(self.folder, config, name)

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

    torch loads the folder with TorchPredictor; onnx and int8 run model.onnx and
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
        return TorchPredictor(name or folder.name, folder, max_length)
    return OnnxPredictor(name or f"{folder.name}-{runtime}", folder, onnx_file, threads=threads,
                         max_length=max_length)

