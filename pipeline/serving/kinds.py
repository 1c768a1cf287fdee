"""Model kinds: each kind of model folder the pipeline serves (a Hugging Face encoder classifier, a BiLSTM
student) as one adapter, so that export, the runtimes, model cards and `predict` ask the adapter and never
which kind a folder is.

    kind = kind_of(read_config(folder))    # TRANSFORMER or BILSTM
    model, tokenizer, is_pair = kind.load(folder, name)
    for idx, feeds in kind.batches(tokenizer, texts, pairs, 32, max_length, is_pair, folder): ...

An adapter knows how its folders are read (the task, the tokenizer, the weights), how its inputs are
batched (the same feeds in every runtime, so their logits compare row by row), what its ONNX graph is
traced from, and what its model card says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.data.batches import MODEL_INPUTS, encode, length_buckets, pad_batch
from pipeline.errors import DataError, ModelError
from pipeline.models import bilstm, encoders
from pipeline.tasks import CLASSIFICATION, GLUE, REGRESSION, Task

Feeds = dict[str, np.ndarray]
Batches = Iterator[tuple[np.ndarray, Feeds]]


@dataclass
class Exportable:
    """A model saved into the export folder plus what its ONNX export and parity check need."""

    parameters: int
    traced: nn.Module  # what goes to ONNX
    input_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    batches: Callable[[Sequence[str], Sequence[str] | None, int], Batches]  # input order
    reference: Callable[[Feeds], np.ndarray]  # the PyTorch logits the graph must reproduce
    fusion: tuple[int, int] | None = None  # (hidden, heads) of a Transformer whose graph onnxruntime's BERT fusion knows

    def sample(self, task: Task) -> tuple[torch.Tensor, ...]:
        """Two rows of different lengths, so the traced graph includes padding and masking."""
        texts = ["a b c d e f g h", "a b"]
        pairs = ["e f", "c d e f g h"] if task.is_pair else None
        _, feeds = next(self.batches(texts, pairs, len(texts)))
        return tuple(torch.from_numpy(feeds[n]) for n in self.input_names)


class ModelKind:
    """What serving needs from one kind of model folder."""

    name: str  # as export.json records it
    architecture: str  # the model card's words for it
    needs: str  # what the model card's snippets need installed
    torch_usage: str  # the card's PyTorch snippet: FOLDER, $pair (", second text") and $pair_list (", [...]" or ", None")
    onnx_usage: str  # its ONNX snippet: also $onnx, $int8, $fusions, $max_length, $name

    def owns(self, config: dict[str, Any]) -> bool:
        raise NotImplementedError

    def task(self, config: dict[str, Any], recorded: str | None) -> Task:
        """The task a folder's own config describes (labels, regression or not, pairs)."""
        raise NotImplementedError

    def tokenizer(self, folder: Path, config: dict[str, Any], name: str) -> tuple[Any, bool | None]:
        """(tokenizer, is_pair) without loading the weights: what an ONNX runtime needs. is_pair None: the
        model takes what the caller passes."""
        raise NotImplementedError

    def load(self, folder: Path, name: str) -> tuple[nn.Module, Any, bool | None]:
        """(model in eval mode, tokenizer, is_pair) of a folder, for PyTorch."""
        raise NotImplementedError

    def forward(self, model: nn.Module, feeds: Feeds) -> np.ndarray:
        """PyTorch logits of one batch of feeds."""
        raise NotImplementedError

    def batches(self, tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
                max_length: int, is_pair: bool | None, folder: Path) -> Batches:
        """(row indices, feeds) per batch: what every runtime of this kind is fed."""
        raise NotImplementedError

    def prepare_export(self, source: Path, dst: Path, task: Task, max_length: int) -> Exportable:
        """Save the model at `source` into `dst` in its own format, with the task's labels; return what its
        ONNX export needs."""
        raise NotImplementedError


# ---------------------------------------------------------------- Hugging Face encoder classifiers
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


class LogitsOnly(nn.Module):
    """A Hugging Face classifier with positional inputs in `names` order returning the logits tensor:
    the ONNX graph's signature."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


class Transformer(ModelKind):
    name = "hf"
    architecture = "BERT-style Transformer (Hugging Face)"
    needs = ("`transformers` and `onnxruntime` for the Python snippets; this repository's `pipeline` package "
             "(`pip install -e .` in a checkout) for the command line")
    torch_usage = """```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

model = AutoModelForSequenceClassification.from_pretrained("FOLDER")
tokenizer = AutoTokenizer.from_pretrained("FOLDER")
classify = pipeline("text-classification", model="FOLDER")
print(classify({"text": "a gorgeous film"$text_pair}))
```"""
    onnx_usage = """```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("FOLDER")
# or $int8; without SkipLayerNormFusion, whose CPU kernel is slower than what it fuses
session = ort.InferenceSession("FOLDER/$onnx", disabled_optimizers=$fusions)
enc = tokenizer(["a gorgeous film"]$pair, truncation=True, max_length=$max_length, padding=True,
                return_tensors="np")
logits = session.run(None, {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()})[0]
```"""

    def owns(self, config: dict[str, Any]) -> bool:
        return config.get("arch") != bilstm.ARCH

    def task(self, config: dict[str, Any], recorded: str | None) -> Task:
        regression = config.get("problem_type") == "regression"
        id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
        n = 1 if regression else len(id2label) or int(config.get("num_labels", 2))
        labels = ("score",) if regression else tuple(id2label.get(i, f"LABEL_{i}") for i in range(n))
        name = str(config.get("finetuning_task") or "unknown")
        preset = GLUE.get(name)
        return Task(name, REGRESSION if regression else CLASSIFICATION, labels, (), bool(preset and preset.pair))

    def tokenizer(self, folder: Path, config: dict[str, Any], name: str) -> tuple[Any, bool | None]:
        from pipeline.models.hf import load_tokenizer

        return load_tokenizer(str(folder), key=name), None

    def load(self, folder: Path, name: str) -> tuple[nn.Module, Any, bool | None]:
        from pipeline.models.hf import load_classifier, load_tokenizer

        return load_classifier(str(folder), key=name).eval(), load_tokenizer(str(folder), key=name), None

    @torch.inference_mode()
    def forward(self, model: nn.Module, feeds: Feeds) -> np.ndarray:
        inputs = encoders.accepted(model, {k: torch.from_numpy(v) for k, v in feeds.items()})
        return model(**inputs).logits.float().numpy()

    def batches(self, tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
                max_length: int, is_pair: bool | None, folder: Path) -> Batches:
        return hf_batches(tokenizer, texts, pairs, batch_size, max_length)

    def prepare_export(self, source: Path, dst: Path, task: Task, max_length: int) -> Exportable:
        """save_pretrained (safetensors) + tokenizer, with the task's label names in the config."""
        model, tokenizer, _ = self.load(source, str(source))
        if model.config.num_labels != task.num_labels:
            raise ModelError(f"{source}: the model has {model.config.num_labels} labels, task {task.name} has "
                             f"{task.num_labels}")
        for key, value in task.model_labels().items():
            setattr(model.config, key, value)
        model.config.finetuning_task = task.name
        model.save_pretrained(str(dst))
        tokenizer.save_pretrained(str(dst))
        model.set_attn_implementation("eager")  # the attention pattern onnxruntime's fusion recognises
        names = [k for k in MODEL_INPUTS if k in tokenizer(["a"], ["b"] if task.is_pair else None)]
        wrapped = LogitsOnly(model, names).eval()

        @torch.inference_mode()
        def reference(feeds: Feeds) -> np.ndarray:
            return wrapped(*(torch.from_numpy(feeds[n]) for n in names)).numpy()

        dims = encoders.dims(model)
        return Exportable(
            parameters=sum(p.numel() for p in model.parameters()), traced=wrapped, input_names=names,
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
            batches=lambda t, p, b: hf_batches(tokenizer, t, p, b, max_length, by_length=False),
            reference=reference, fusion=(dims.hidden, dims.heads) if encoders.family(model).fusion else None)


# ---------------------------------------------------------------- BiLSTM students
def bilstm_batches(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int) -> Batches:
    """The input-order batches of pipeline.models.bilstm.predict_logits, as numpy feeds."""
    for start, stop, inputs in bilstm.batches(tokenizer, texts, pairs, batch_size):
        yield np.arange(start, stop), {k: t.numpy() for k, t in inputs.items()}


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


class BiLSTM(ModelKind):
    name = "bilstm"
    architecture = "BiLSTM (Tang et al. 2019)"
    needs = "this repository's `pipeline` package (`pip install -e .` in a checkout)"
    torch_usage = """```python
from pipeline.models.bilstm import load_bilstm, predict_logits

model, tokenizer, config = load_bilstm("FOLDER")
logits = predict_logits(model, tokenizer, ["a gorgeous film"]$pair_list, batch_size=32)
labels = config["labels"]
```"""
    onnx_usage = """ONNX inputs: $inputs (token ids padded with the
tokenizer's pad id, and the true length of each row); the tokenizer is the folder's own.

```python
from pipeline.serving.runtimes import OnnxPredictor

predictor = OnnxPredictor("$name", "FOLDER", "$onnx", threads=2)  # or "$int8"
logits = predictor.logits(["a gorgeous film"]$pair_list, batch_size=32)
```"""

    def owns(self, config: dict[str, Any]) -> bool:
        return config.get("arch") == bilstm.ARCH

    def task(self, config: dict[str, Any], recorded: str | None) -> Task:
        n = int(config.get("model", {}).get("num_labels", 2))
        labels = tuple(str(x) for x in config.get("labels") or range(n))
        return Task(str(recorded or "unknown"), REGRESSION if n == 1 else CLASSIFICATION, labels, (),
                    bool(config.get("model", {}).get("is_pair", False)))

    def tokenizer(self, folder: Path, config: dict[str, Any], name: str) -> tuple[Any, bool | None]:
        try:
            kind, max_words = config["tokenizer"]["kind"], config["tokenizer"]["max_words"]
            tokenizer_class = bilstm.TOKENIZERS[kind]
        except (KeyError, TypeError):
            raise ModelError(f"{folder / 'config.json'}: missing or unknown tokenizer settings (key 'tokenizer')") from None
        try:
            tokenizer = tokenizer_class.load(folder, max_words)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{folder}: cannot load the BiLSTM tokenizer ({exc})") from None
        return tokenizer, bool(config.get("model", {}).get("is_pair", False))

    def load(self, folder: Path, name: str) -> tuple[nn.Module, Any, bool | None]:
        model, tokenizer, _ = bilstm.load_bilstm(folder)
        return model, tokenizer, bool(model.config["is_pair"])

    @torch.inference_mode()
    def forward(self, model: nn.Module, feeds: Feeds) -> np.ndarray:
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()

    def batches(self, tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
                max_length: int, is_pair: bool | None, folder: Path) -> Batches:
        if is_pair and pairs is None:
            raise DataError(f"{folder}: a pair model: every example needs a second text")
        return bilstm_batches(tokenizer, texts, pairs if is_pair else None, batch_size)

    def prepare_export(self, source: Path, dst: Path, task: Task, max_length: int) -> Exportable:
        """Re-save the student folder (weights, vocabulary, tokenisation settings) with the task's labels."""
        model, tokenizer, config = bilstm.load_bilstm(source)
        if model.config["num_labels"] != task.num_labels or bool(model.config["is_pair"]) != task.is_pair:
            raise ModelError(f"{source}: a BiLSTM with {model.config['num_labels']} labels (is_pair="
                             f"{model.config['is_pair']}) does not fit task {task.name}")
        extra = {k: v for k, v in config.items() if k not in ("arch", "model", "tokenizer")}
        extra.update(task=task.to_json(), labels=list(task.labels))
        bilstm.save_bilstm(model, tokenizer, dst, extra)
        names = ["input_ids", "lengths"] + (["input_ids_b", "lengths_b"] if task.is_pair else [])
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"},
                "input_ids_b": {0: "batch", 1: "sequence_b"}, "lengths_b": {0: "batch"}}

        @torch.inference_mode()
        def reference(feeds: Feeds) -> np.ndarray:
            return model(**{n: torch.from_numpy(feeds[n]) for n in names}).numpy()

        return Exportable(
            parameters=sum(p.numel() for p in model.parameters()), traced=PaddedBiLSTM(model),
            input_names=names, dynamic_axes={n: axes[n] for n in names},
            batches=lambda t, p, b: bilstm_batches(tokenizer, t, p, b), reference=reference)


TRANSFORMER, BILSTM = Transformer(), BiLSTM()
KINDS = {kind.name: kind for kind in (TRANSFORMER, BILSTM)}


def kind_of(config: dict[str, Any]) -> ModelKind:
    """The adapter of a model or export folder, from its config.json."""
    return BILSTM if BILSTM.owns(config) else TRANSFORMER
