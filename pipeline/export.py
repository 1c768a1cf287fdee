"""Export a trained classifier as a self-contained folder that can be deployed without this pipeline's
training code: the PyTorch model, ONNX fp32 and int8 graphs, a model card and a summary.

    export_model("models/students/bilstm_kd", "exports/bilstm_kd", name="bilstm_kd", task="sst2",
                 dev_texts=texts, dev_pairs=None, card_info={...})

The folder holds
- the model in its own format: Hugging Face `save_pretrained` (teacher, Transformer students) or the
  BiLSTM student folder of pipeline.models.bilstm, with the task's label names in its config;
- `model.onnx`: fp32, dynamic batch and sequence axes, the same inputs the PyTorch predictors feed;
- `model.int8.onnx`: onnxruntime dynamic int8 quantisation of model.onnx;
- `README.md` (model card) and `export.json` (files, sizes, parity).

The ONNX graph is kept only if onnxruntime reproduces the PyTorch logits on real dev sentences, batched
so that padding varies within a batch; the folder appears only when every step succeeded.

Exporter: torch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). In torch 2.13 it is
deprecated but present, needs no extra package and exports these models in well under a second. The
torch.export-based exporter needs the `onnxscript` package, takes seconds even for a tiny BERT, and, like
the TorchScript one, cannot export `pack_padded_sequence`: BiLSTMs are therefore exported through a
padding-aware twin (`PaddedBiLSTM`, no packed sequences) whose logits the parity check compares with
the original model's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.data import atomic_path
from pipeline.errors import DataError, ModelError
from pipeline.evaluate import Predictor, load_predictor
from pipeline.inference import encode as hf_encode
from pipeline.inference import length_buckets
from pipeline.models import bilstm
from pipeline.tasks import TASKS, Task, get_task

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
SUMMARY_FILE = "export.json"
CARD_FILE = "README.md"
OPSET = 17
EXPORTER = "torch.onnx (TorchScript-based, dynamo=False)"
RUNTIMES: dict[str, str | None] = {"torch": None, "onnx": ONNX_FILE, "int8": INT8_FILE}
HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PARITY_BATCH = 16

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


def export_info(folder: str | Path) -> dict[str, Any]:
    """export.json of an export folder; {} for a plain model folder (or an unreadable summary)."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def label_names(folder: str | Path) -> list[str]:
    """The model's label names by id: HF config id2label, BiLSTM config "labels"."""
    config = read_config(folder)
    if model_kind(config) == "bilstm":
        labels = config.get("labels")
        if labels:
            return [str(x) for x in labels]
        return [str(i) for i in range(int(config.get("model", {}).get("num_labels", 2)))]
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    n = len(id2label) or int(config.get("num_labels", 2))
    return [id2label.get(i, f"LABEL_{i}") for i in range(n)]


def task_of(folder: str | Path) -> Task | None:
    """The task a folder was trained/exported for: export.json, then the config's task key, then the
    registered task whose label names match (a fine-tuned teacher only stores its labels)."""
    config = read_config(folder)
    for name in (export_info(folder).get("task"), config.get("task"), config.get("finetuning_task")):
        if name in TASKS:
            return TASKS[name]
    labels = tuple(label_names(folder))
    return next((t for t in TASKS.values() if t.labels == labels), None)


def is_pair_model(folder: str | Path) -> bool:
    """Whether the model classifies pairs of texts (MRPC) rather than single sentences."""
    config = read_config(folder)
    if model_kind(config) == "bilstm":
        return bool(config.get("model", {}).get("is_pair", False))
    task = task_of(folder)
    return bool(task and task.is_pair)


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
    enc = hf_encode(tokenizer, texts, pairs, max_length)
    lengths = [len(ids) for ids in enc["input_ids"]]
    if by_length:
        groups = length_buckets(lengths, batch_size)
    else:
        groups = [np.arange(i, min(i + batch_size, len(lengths))) for i in range(0, len(lengths), batch_size)]
    keys = [k for k in HF_INPUTS if k in enc]
    for idx in groups:
        batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="np")
        yield idx, {k: np.asarray(batch[k], dtype=np.int64) for k in keys}


def bilstm_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> Batches:
    """The input-order batches of pipeline.models.bilstm.predict_logits, as numpy feeds."""
    for start, stop, inputs in bilstm.batches(tokenizer, texts, pairs, batch_size):
        yield np.arange(start, stop), {k: t.numpy() for k, t in inputs.items()}


# ---------------------------------------------------------------- onnxruntime
def onnx_session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session; `threads` sets intra-op threads (None: onnxruntime's default)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"{path}: ONNX file not found (not an export folder? make one with pipeline.export)")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: no per-session warnings on stderr
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None


def run_session(session, feeds: Feeds) -> np.ndarray:
    """Logits for one batch, feeding exactly the graph's inputs."""
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ModelError(f"the ONNX graph needs inputs {missing} that this tokenisation does not produce")
    return session.run(None, {n: feeds[n] for n in names})[0]


@dataclass
class OnnxPredictor:
    """An exported ONNX graph behind the Predictor protocol of pipeline.evaluate.

    Tokenises like the PyTorch predictors (HF: truncation at max_length, length-bucketed batches;
    BiLSTM: its own tokenizer, input-order batches), so its logits match theirs."""

    name: str
    folder: Path
    onnx_file: str = ONNX_FILE
    threads: int | None = None
    max_length: int = 128

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        config = read_config(self.folder)
        self.kind = model_kind(config)
        self.path = self.folder / self.onnx_file
        self.session = onnx_session(self.path, self.threads)
        if self.kind == "bilstm":
            self.tokenizer = bilstm_tokenizer(self.folder, config)
            self.is_pair = bool(config.get("model", {}).get("is_pair", False))
        else:
            from pipeline.models.teacher import load_tokenizer

            self.tokenizer = load_tokenizer(str(self.folder), key=self.name)
            self.is_pair = None  # whatever the caller passes
        self.num_labels = int(self.session.get_outputs()[0].shape[-1])

    def _batches(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> Batches:
        if self.kind == "bilstm":
            if self.is_pair and pairs is None:
                raise DataError(f"{self.folder}: a pair model: every example needs a second text")
            return bilstm_batches(self.tokenizer, texts, pairs if self.is_pair else None, batch_size)
        return hf_batches(self.tokenizer, texts, pairs, batch_size, self.max_length)

    def logits(self, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> np.ndarray:
        out = np.empty((len(texts), self.num_labels), dtype=np.float32)
        for idx, feeds in self._batches(list(texts), list(pairs) if pairs is not None else None, batch_size):
            out[idx] = run_session(self.session, feeds)
        return out

    def num_parameters(self) -> int:
        """Elements of the graph's initializers (for int8: the quantised weights plus their scales)."""
        import onnx

        graph = onnx.load(str(self.path)).graph
        return int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.initializer))


def load_export(folder: str | Path, runtime: str = "torch", *, name: str | None = None,
                threads: int | None = None) -> Predictor:
    """A Predictor for an export folder (or a plain model folder with runtime="torch").

    torch reuses pipeline.evaluate's HFPredictor/BiLSTMPredictor; onnx and int8 run model.onnx and
    model.int8.onnx. The default name carries the runtime, so several runtimes can sit in one report."""
    folder = Path(folder)
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    read_config(folder)
    max_length = int(export_info(folder).get("max_length", 128))
    onnx_file = RUNTIMES[runtime]
    if onnx_file is None:
        return load_predictor(name or folder.name, folder, max_length)
    return OnnxPredictor(name or f"{folder.name}-{runtime}", folder, onnx_file, threads=threads,
                         max_length=max_length)


# ---------------------------------------------------------------- export-time model views
class LogitsOnly(nn.Module):
    """A Hugging Face classifier with positional inputs in `names` order returning the logits tensor:
    the ONNX graph's signature."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


class PaddedBiLSTM(bilstm.BiLSTMClassifier):
    """The same BiLSTM computed on padded batches without packed sequences, so it can be traced.

    Forward direction: run on the padded batch and read the state at position length-1 (later padding
    cannot reach it). Backward direction: reverse each row within its own length, run the reverse
    weights forward, read position length-1. Same weights, same maths as the packed original."""

    def __init__(self, source: bilstm.BiLSTMClassifier):
        super().__init__(**source.config)
        self.load_state_dict(source.state_dict())
        dim, hidden = source.config["embedding_dim"], source.config["hidden"]
        self.forward_lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(dim, hidden, batch_first=True)
        with torch.no_grad():
            for weight in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                getattr(self.forward_lstm, weight).copy_(getattr(self.lstm, weight))
                getattr(self.backward_lstm, weight).copy_(getattr(self.lstm, f"{weight}_reverse"))
        self.eval()

    def encode(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.dropout(self.embedding(input_ids))
        last = (lengths.clamp(min=1) - 1).unsqueeze(1)  # (batch, 1), as the original clamps
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        reverse = torch.where(pos <= last, last - pos, pos)  # padding stays where it is
        emb_reversed = emb.gather(1, reverse.unsqueeze(-1).expand_as(emb))
        out_f, _ = self.forward_lstm(emb)
        out_b, _ = self.backward_lstm(emb_reversed)
        at_last = last.unsqueeze(-1).expand(-1, 1, out_f.shape[-1])
        return torch.cat([out_f.gather(1, at_last).squeeze(1), out_b.gather(1, at_last).squeeze(1)], dim=-1)


@dataclass
class Exportable:
    """A model saved into the export folder plus what its ONNX export and parity check need."""

    kind: str
    parameters: int
    traced: nn.Module  # what goes to ONNX
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    batches: Callable[[Sequence[str], Sequence[str] | None, int], Batches]  # input order
    reference: Callable[[Feeds], np.ndarray]  # the PyTorch logits the graph must reproduce

    def sample(self, task: Task) -> tuple[torch.Tensor, ...]:
        """Two rows of different lengths, so the traced graph includes padding and masking."""
        texts = ["a b c d e f g h", "a b"]
        pairs = ["e f", "c d e f g h"] if task.is_pair else None
        _, feeds = next(self.batches(texts, pairs, len(texts)))
        return tuple(torch.from_numpy(feeds[n]) for n in self.input_names)


def _prepare_hf(source: Path, dst: Path, task: Task, max_length: int) -> Exportable:
    """save_pretrained (safetensors) + tokenizer, with the task's label names in the config."""
    from pipeline.models.teacher import load_classifier, load_tokenizer

    model = load_classifier(str(source), key=str(source)).eval()
    tokenizer = load_tokenizer(str(source), key=str(source))
    if model.config.num_labels != task.num_labels:
        raise ModelError(f"{source}: the model has {model.config.num_labels} labels, task {task.name} has "
                         f"{task.num_labels}")
    model.config.id2label = dict(enumerate(task.labels))
    model.config.label2id = {label: i for i, label in enumerate(task.labels)}
    model.config.finetuning_task = task.name
    model.save_pretrained(str(dst))
    tokenizer.save_pretrained(str(dst))
    names = [k for k in HF_INPUTS if k in tokenizer(["a"], ["b"] if task.is_pair else None)]
    wrapped = LogitsOnly(model, names).eval()

    @torch.inference_mode()
    def reference(feeds: Feeds) -> np.ndarray:
        return wrapped(*(torch.from_numpy(feeds[n]) for n in names)).numpy()

    return Exportable(
        kind="hf", parameters=sum(p.numel() for p in model.parameters()), traced=wrapped, input_names=names,
        dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
        batches=lambda t, p, b: hf_batches(tokenizer, t, p, b, max_length, by_length=False),
        reference=reference)


def _prepare_bilstm(source: Path, dst: Path, task: Task) -> Exportable:
    """Re-save the student folder (weights, vocabulary, tokenisation settings) with the task's labels."""
    model, tokenizer, config = bilstm.load_bilstm(source)
    if model.config["num_labels"] != task.num_labels or bool(model.config["is_pair"]) != task.is_pair:
        raise ModelError(f"{source}: a BiLSTM with {model.config['num_labels']} labels (is_pair="
                         f"{model.config['is_pair']}) does not fit task {task.name}")
    extra = {k: v for k, v in config.items() if k not in ("arch", "model", "tokenizer")}
    extra.update(task=task.name, labels=list(task.labels))
    bilstm.save_bilstm(model, tokenizer, dst, extra)
    names = ["input_ids", "lengths"] + (["input_ids_b", "lengths_b"] if task.is_pair else [])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"},
            "input_ids_b": {0: "batch", 1: "sequence_b"}, "lengths_b": {0: "batch"}}

    @torch.inference_mode()
    def reference(feeds: Feeds) -> np.ndarray:
        return model(**{n: torch.from_numpy(feeds[n]) for n in names}).numpy()

    return Exportable(
        kind="bilstm", parameters=sum(p.numel() for p in model.parameters()), traced=PaddedBiLSTM(model),
        input_names=names, dynamic_axes={n: axes[n] for n in names},
        batches=lambda t, p, b: bilstm_batches(tokenizer, t, p, b), reference=reference)


# ---------------------------------------------------------------- export steps
def write_onnx(exportable: Exportable, sample: tuple[torch.Tensor, ...], path: Path) -> None:
    """fp32 ONNX with dynamic batch and sequence axes."""
    try:
        with warnings.catch_warnings():
            # The exporter's deprecation notice and tracer warnings: the parity check is the real test.
            warnings.simplefilter("ignore")
            torch.onnx.export(exportable.traced.eval(), sample, str(path), dynamo=False,
                              input_names=exportable.input_names, output_names=["logits"],
                              dynamic_axes={**exportable.dynamic_axes, "logits": {0: "batch"}},
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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet_root_logger():
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    except Exception as exc:  # onnxruntime.quantization raises assorted types
        raise ModelError(f"{int8.name}: int8 quantisation failed ({type(exc).__name__}: {exc})") from exc


def compare_runtimes(exportable: Exportable, folder: Path, texts: Sequence[str], pairs: Sequence[str] | None,
                     ) -> dict[str, np.ndarray]:
    """Logits of PyTorch, ONNX fp32 and ONNX int8 on the same input-order (mixed-length) batches."""
    fp32, int8 = onnx_session(folder / ONNX_FILE), onnx_session(folder / INT8_FILE)
    out: dict[str, list[np.ndarray]] = {"torch": [], "onnx": [], "int8": []}
    for _, feeds in exportable.batches(texts, pairs, PARITY_BATCH):
        out["torch"].append(exportable.reference(feeds))
        out["onnx"].append(run_session(fp32, feeds))
        out["int8"].append(run_session(int8, feeds))
    return {k: np.concatenate(v) for k, v in out.items()}


def parity_summary(logits: dict[str, np.ndarray], onnx_path: Path, tolerance: float) -> dict[str, Any]:
    """Max |logit difference| of fp32 vs PyTorch (must be <= tolerance) and of int8 vs fp32."""
    fp32_diff = float(np.abs(logits["onnx"] - logits["torch"]).max())
    if not fp32_diff <= tolerance:  # also catches NaN
        raise ModelError(f"{onnx_path}: ONNX logits differ from PyTorch by up to {fp32_diff:.3g} on "
                         f"{len(logits['torch'])} dev examples (tolerance {tolerance:g})")
    agreement = float(np.mean(logits["int8"].argmax(-1) == logits["onnx"].argmax(-1)))
    return {
        "onnx": {"max_abs_diff": fp32_diff, "tolerance": tolerance},
        "int8": {"max_abs_diff_vs_fp32": float(np.abs(logits["int8"] - logits["onnx"]).max()),
                 "argmax_agreement_vs_fp32": round(agreement, 4)},
    }


def _resolve_task(task: Task | str) -> Task:
    if isinstance(task, Task):
        return task
    try:
        return get_task(task)
    except KeyError as exc:
        raise ModelError(f"task: {exc.args[0]}") from None


def _parity_inputs(task: Task, dev_texts: Sequence[str], dev_pairs: Sequence[str] | None,
                   n: int) -> tuple[list[str], list[str] | None]:
    texts = list(dev_texts[:n])
    if not texts:
        raise DataError("dev_texts: no sentences for the ONNX parity check")
    if not task.is_pair:
        return texts, None
    if dev_pairs is None or len(dev_pairs) < len(texts):
        raise DataError(f"dev_pairs: task {task.name} is a pair task: give the second text of every dev example")
    return texts, list(dev_pairs[:n])


def export_model(model_folder: str | Path, out_dir: str | Path, *, name: str, task: Task | str,
                 dev_texts: Sequence[str], dev_pairs: Sequence[str] | None, card_info: dict[str, Any],
                 tolerance: float = 1e-4, parity_examples: int = 64, max_length: int = 128) -> dict[str, Any]:
    """Export a teacher/student folder to `out_dir` (see the module docstring); returns the summary
    also written to out_dir/export.json. Raises ModelError if the ONNX graph's logits differ from
    PyTorch's by more than `tolerance` on the first `parity_examples` dev examples, leaving no out_dir."""
    source, out_dir, task = Path(model_folder), Path(out_dir), _resolve_task(task)
    kind = model_kind(read_config(source))
    texts, pairs = _parity_inputs(task, dev_texts, dev_pairs, parity_examples)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        exportable = (_prepare_bilstm(source, tmp, task) if kind == "bilstm"
                      else _prepare_hf(source, tmp, task, max_length))
        write_onnx(exportable, exportable.sample(task), tmp / ONNX_FILE)
        write_int8(tmp / ONNX_FILE, tmp / INT8_FILE)
        parity = parity_summary(compare_runtimes(exportable, tmp, texts, pairs), out_dir / ONNX_FILE, tolerance)
        summary: dict[str, Any] = {
            "name": name, "task": task.name, "labels": list(task.labels), "is_pair": task.is_pair,
            "kind": kind, "source": str(source), "parameters": exportable.parameters, "max_length": max_length,
            "exporter": EXPORTER, "opset": OPSET, "onnx_inputs": exportable.input_names,
            "parity_examples": len(texts), **parity, "folder": str(out_dir),
        }
        (tmp / CARD_FILE).write_text(render_card(summary, card_info, _file_sizes(tmp)), encoding="utf-8")
        summary["files"] = _file_sizes(tmp)
        summary["card_info"] = card_info
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary


def _file_sizes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- model card
def _table(rows: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def _usage(summary: dict[str, Any]) -> str:
    pair = ', "the second text"' if summary["is_pair"] else ""
    pair_list = ', ["the second text"]' if summary["is_pair"] else ", None"
    if summary["kind"] == "hf":
        torch_part = f"""```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

model = AutoModelForSequenceClassification.from_pretrained("FOLDER")
tokenizer = AutoTokenizer.from_pretrained("FOLDER")
classify = pipeline("text-classification", model="FOLDER")
print(classify({{"text": "a gorgeous film"{', "text_pair": "the second text"' if summary["is_pair"] else ''}}}))
```"""
        onnx_part = f"""```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("FOLDER")
session = ort.InferenceSession("FOLDER/{ONNX_FILE}")  # or {INT8_FILE}
enc = tokenizer(["a gorgeous film"]{pair}, truncation=True, max_length={summary["max_length"]}, padding=True,
                return_tensors="np")
logits = session.run(None, {{i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}})[0]
```"""
    else:
        torch_part = f"""```python
from pipeline.models.bilstm import load_bilstm, predict_logits

model, tokenizer, config = load_bilstm("FOLDER")
logits = predict_logits(model, tokenizer, ["a gorgeous film"]{pair_list}, batch_size=32)
labels = config["labels"]
```"""
        onnx_part = f"""ONNX inputs: {', '.join(summary['onnx_inputs'])} (token ids padded with the
tokenizer's pad id, and the true length of each row); the tokenizer is the folder's own.

```python
from pipeline.export import OnnxPredictor

predictor = OnnxPredictor("{summary['name']}", "FOLDER", "{ONNX_FILE}", threads=2)  # or "{INT8_FILE}"
logits = predictor.logits(["a gorgeous film"]{pair_list}, batch_size=32)
```"""
    example = "$'the first text\\tthe second text'" if summary["is_pair"] else '"a gorgeous film"'
    cli = f"""```bash
python -m pipeline.predict FOLDER {example}
python -m pipeline.predict FOLDER --file texts.txt --json --runtime onnx   # or int8, torch
```"""
    if summary["is_pair"]:
        cli += "\n\nPair task: every argument or line holds two tab-separated texts."
    return (f"### PyTorch\n\n{torch_part}\n\n### ONNX (onnxruntime)\n\n{onnx_part}\n\n"
            f"### Command line\n\n{cli}\n").replace("FOLDER", summary["folder"])


def render_card(summary: dict[str, Any], card_info: dict[str, Any], files: dict[str, int]) -> str:
    """README.md: what the model is, how it was made and measured, and how to load it.

    card_info keys used: description, teacher, data, method, params, metrics, speed; any others are
    listed under "Other details"."""
    known = ("description", "teacher", "data", "method", "params", "metrics", "speed")
    arch = "BERT-style Transformer (Hugging Face)" if summary["kind"] == "hf" else "BiLSTM (Tang et al. 2019)"
    overview = {
        "name": summary["name"], "architecture": arch, "parameters": f"{summary['parameters']:,}",
        "task": f"{summary['task']} ({'text pairs' if summary['is_pair'] else 'single sentences'})",
        "labels": ", ".join(summary["labels"]), "teacher": card_info.get("teacher", "n/a"),
        "data": card_info.get("data", "n/a"),
    }
    parts = [f"# {summary['name']}", ""]
    if card_info.get("description"):
        parts += [str(card_info["description"]), ""]
    parts += [f"A {summary['task']} text classifier distilled and exported by bert-distill.", "",
              "## Model", "", _table(overview), "", "## Training", ""]
    parts += [f"Method: {card_info.get('method', 'n/a')}", ""]
    if card_info.get("params"):
        parts += [_table(card_info["params"]), ""]
    for title, key in (("Metrics", "metrics"), ("Speed", "speed")):
        parts += [f"## {title}", "", _table(card_info[key]) if card_info.get(key) else "Not measured.", ""]
    others = {k: v for k, v in card_info.items() if k not in known}
    if others:
        parts += ["## Other details", "", _table(others), ""]
    parts += ["## ONNX", "",
              f"Exported with {summary['exporter']}, opset {summary['opset']}; inputs "
              f"{', '.join(summary['onnx_inputs'])}, dynamic batch and sequence axes.", "",
              _table({
                  "fp32 max abs logit diff vs PyTorch": f"{summary['onnx']['max_abs_diff']:.2e} "
                                                         f"(tolerance {summary['onnx']['tolerance']:g})",
                  "int8 max abs logit diff vs fp32": f"{summary['int8']['max_abs_diff_vs_fp32']:.3g}",
                  "int8 argmax agreement with fp32": f"{100 * summary['int8']['argmax_agreement_vs_fp32']:.2f}%",
                  "examples compared": f"{summary['parity_examples']} dev examples, mixed lengths per batch",
              }), "",
              "## Files", "", "| file | bytes |", "|---|---|"]
    parts += [f"| {name} | {size:,} |" for name, size in files.items()]
    parts += [f"| {SUMMARY_FILE} | (summary of this export) |", "", "## How to load", "", _usage(summary), ""]
    return "\n".join(parts)
