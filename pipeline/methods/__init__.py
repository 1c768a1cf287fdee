"""The distillation methods, one file each, found by this registry.

A method file defines `METHOD = Method(...)`: its name (the params section and the stage names), a
title and summary (report, model cards, README), the params schema of one student, its default
students, its training steps (each with the loss terms it declares), and optionally a
general-distillation objective. Params validation (pipeline/params/config.py), the DAG (pipeline/orchestration/dag.py), the
stages (stages/distill.py), export cards and the report read everything from here, so adding a method
is one new file in this folder plus its students in params (see the README).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.artifacts import CHECKPOINTS, HISTORY, REPORTS, STEPS, student_dir
from pipeline.params.schema import declared

if TYPE_CHECKING:
    from pipeline.params.config import Params
    from pipeline.params.schema import Section, Weights


@dataclass(frozen=True)
class StepRun:
    """What a step's `run` gets: the params, the student, the values of the params keys its stage declares
    (its checkpoints' fingerprint) and the paths the stage uses."""

    params: Params
    name: str  # the student
    cfg: Any  # its entry of the method's params section
    declared: dict[str, Any]  # Method.declared: the step's params keys (as dvc.yaml lists them) and their values
    out: Path  # the folder this step writes
    history: Path  # its training history
    checkpoints: Path  # its scratch checkpoint folder
    previous: Path | None  # the folder the previous step wrote (None for a first step)


@dataclass(frozen=True)
class Step:
    """One training stage of a method (`<method>_<name>@<student>`, or `<method>@<student>` when the
    method has one step)."""

    name: str
    summary: str  # what the step trains, for dvc.yaml and the README
    weights: type[Weights]  # the loss terms it declares (its `weights:` schema)
    run: Callable[[StepRun], dict[str, Any]]  # trains and saves; returns the stage summary
    deps: tuple[str, ...]  # artifacts it reads; `${item.x}` is the student's key x, `${previous}` the last step's out
    keys: tuple[str, ...] = ()  # the student's params keys it reads (empty: all of them)
    shared: tuple[str, ...] = ("precision", "seed", "data.max_length")  # other params keys it reads

@dataclass(frozen=True)
class Objective:
    """A general-distillation objective: a small student learns the pretrained teacher on general text
    (stage `general_distill@<method>`)."""

    summary: str
    config: type[Section]  # its params section, general_distill.<method>
    build: Callable[..., Any]  # (student_config, teacher, cfg, layer_map, tokenizer) -> (student, recipe)
    teacher: Callable[[str, str], Any]  # (model source, params key) -> the pretrained teacher
    weights: type[Weights]  # the terms it declares


@dataclass(frozen=True)
class Ablation:
    """A student, by its name in params, that leaves one part of its method out of another student, and what
    the method's paper measured for leaving the same part out; the report puts the two costs side by side."""

    base: str  # the student it is compared with
    leaves_out: str  # what it does without
    paper: str  # the paper's measurement of the same change: where, on what, and how much
    paper_points: float | None  # the points that change cost in the paper (None: the paper has no such cell)
    budget: Callable[[Any, Params], str]  # (the student's settings, params) -> what this run gives it, against the paper


@dataclass(frozen=True)
class Method:
    name: str
    title: str  # e.g. "TinyBERT (Jiao et al. 2020)"
    summary: str  # one sentence: what is distilled how
    student: type[Section]  # the params schema of one student
    steps: tuple[Step, ...]
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # default students: name -> overrides
    objective: Objective | None = None
    validate: Callable[[str, Any, Params], None] | None = None  # cross-section checks of one student
    ablations: dict[str, Ablation] = field(default_factory=dict)  # students (by name) that are ablations of another

    def stage(self, step: Step) -> str:
        """The DVC stage name (foreach over the students adds `@<student>`)."""
        return self.name if len(self.steps) == 1 else f"{self.name}_{step.name}"

    def params_keys(self, step: Step, student: str) -> list[str]:
        """The params keys a step of `student` reads (dvc.yaml's `params` of its stage; `${key}` for the foreach)."""
        own = [f"{self.name}.{student}.{k}" for k in step.keys] or [f"{self.name}.{student}"]
        return [*step.shared, *own]

    def run_of(self, step: Step, params: Params, student: str, paths: dict[str, Path | None]) -> StepRun:
        """What `step.run` gets for `student`, writing where `paths` (as `paths()` gives them) say."""
        return StepRun(params, student, params.section(self.name)[student],
                       declared(params, self.params_keys(step, student)), paths["out"], paths["history"],
                       paths["checkpoints"], paths["previous"])

    def paths(self, step: Step, student: str) -> dict[str, Path | None]:
        """Where a step of a student writes: its folder (the last step: models/students/<student>, earlier
        ones: models/steps/<student>/<step>), report, training history and checkpoints; and the folder
        of the step before it (None for the first)."""
        i = self.steps.index(step)
        last = i == len(self.steps) - 1
        return {
            "out": student_dir(student) if last else STEPS / student / step.name,
            "report": REPORTS / ("students" if last else f"steps/{student}") / f"{student if last else step.name}.json",
            "history": HISTORY / (f"{student}.json" if last else f"{student}_{step.name}.json"),
            "checkpoints": CHECKPOINTS / self.stage(step) / student,
            "previous": None if i == 0 else STEPS / student / self.steps[i - 1].name,
        }

    def histories(self, student: str) -> dict[str, Path]:
        """The training logs of a student's steps, labelled for the training-curves figure."""
        return {student if step is self.steps[-1] else f"{student} ({step.name})": self.paths(step, student)["history"]
                for step in self.steps}


_REGISTRY: dict[str, Method] = {}


def methods() -> dict[str, Method]:
    """Every method in this folder, by name, in file-name order."""
    if not _REGISTRY:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{__name__}.{info.name}")
            method = getattr(module, "METHOD", None)
            if isinstance(method, Method):
                if method.name != info.name:  # the stages and DAG find a method's code by its name
                    raise ValueError(f"{module.__file__}: METHOD.name is {method.name!r}; name the file after it")
                _REGISTRY[method.name] = method
    return _REGISTRY


def objectives() -> dict[str, Objective]:
    """General-distillation objectives, named after the method that declares them."""
    return {name: m.objective for name, m in methods().items() if m.objective is not None}
