"""Render dvc.yaml, the DAG, from the stage list below and the method registry:
`python -m pipeline dag` (writes dvc.yaml; `--check` only compares).

Each method step becomes a `foreach` stage over the method's params section; each stage lists the
artifacts it reads, the params keys it reads, and the code it runs: the Python files of this project
its entry point imports, followed through imports. Plumbing whose effect reaches a stage through
params.yaml (validation and the registry) is not followed, so editing one method's file reruns that
method's stages only. A test keeps the committed dvc.yaml equal to this rendering.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipeline.artifacts import (AUGMENTED, EXPORTS, HISTORY, PREPARED, REPORTS, SELECTED, TEACHER, TEACHER_LOGITS,
                                augmented_dir, general_dir, general_history)
from pipeline.augment import NAMES as AUGMENTATIONS
from pipeline.augment import augmenters
from pipeline.data.readers import hub_source
from pipeline.methods import Method, methods, objectives
from pipeline.params.config import PARAMS_FILE
from pipeline.training import general, teacher

DVC_FILE = "dvc.yaml"
ROOT = Path(__file__).resolve().parents[2]  # the repository
NOT_FOLLOWED = {"pipeline", "pipeline.params.config", "pipeline.params.schema", "pipeline.params.profile",
                "pipeline.orchestration.stage", "pipeline.methods", "pipeline.errors"}


# ---------------------------------------------------------------- code dependencies
def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules a file imports (anywhere in it), as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("pipeline", "stages") and module_file(m) is not None}


def code_deps(*roots: str) -> list[str]:
    """The files of the `roots` modules and of every project module they import, transitively (package
    __init__ files and NOT_FOLLOWED plumbing aside)."""
    todo, seen = list(roots), set()
    while todo:
        module = todo.pop()
        if module in seen or (module in NOT_FOLLOWED and module not in roots):
            continue
        seen.add(module)
        todo.extend(imported_modules(module_file(module)))
    files = (module_file(m) for m in seen)
    return sorted(str(f.relative_to(ROOT)) for f in files if f.name != "__init__.py")


# ---------------------------------------------------------------- stages
@dataclass
class Stage:
    name: str
    comment: str
    cmd: str
    deps: list[str]
    code: list[str]
    params: list[str]
    outs: list[str]
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    foreach: str | None = None
    uncached_outs: list[str] = field(default_factory=list)  # outs DVC keeps out of its cache (they go to git)


def method_stages(method: Method) -> list[Stage]:
    stages = []
    for step in method.steps:
        paths = method.paths(step, "${key}")
        step_arg = f" {step.name}" if len(method.steps) > 1 else ""
        deps = [str(paths["previous"]) if d == "${previous}" else d for d in step.deps]
        stages.append(Stage(
            name=method.stage(step), comment=f"{method.title}: {step.summary}",
            cmd=f"python -m stages.distill {method.name} ${{key}}{step_arg}", deps=deps,
            code=code_deps("stages.distill", f"pipeline.methods.{method.name}"),
            params=method.params_keys(step, "${key}"),
            outs=[str(paths["out"])], metrics=[str(paths["report"])], plots=[str(paths["history"])],
            foreach=f"${{{method.name}}}"))
    return stages


def prepare_inputs(params_file: Path = ROOT / PARAMS_FILE) -> list[str]:
    """The prepare stage's data dependencies: `data.source`, unless params.yaml names a Hub dataset there
    (DVC cannot hash one; the stage loads it through `datasets`), and `data.unlabelled`."""
    data = (yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}).get("data", {}) if params_file.is_file() else {}
    hub = hub_source(str(data.get("source", "")), data.get("format", "auto"), params_file.parent)
    return ([] if hub else ["${data.source}"]) + ["${data.unlabelled}"]


def all_stages() -> list[Stage]:
    # general_distill@OBJECTIVE runs its objective's method file (named after it) and what they all share
    method_files = {f"pipeline/methods/{name}.py" for name in methods()}
    general_code = ["pipeline/methods/${item}.py"] + [
        f for f in code_deps("stages.general_distill", *(f"pipeline.methods.{o}" for o in objectives()))
        if f not in method_files]
    # augment@METHOD likewise runs its method's file and what they all share
    augment_files = {f"pipeline/augment/{name}.py" for name in AUGMENTATIONS}
    augment_code = ["pipeline/augment/${item}.py"] + [
        f for f in code_deps("stages.augment", *(f"pipeline.augment.{a}" for a in AUGMENTATIONS))
        if f not in augment_files]
    return [
        Stage("prepare", "read the task's raw data, validate it, subsample train/dev",
              "python -m stages.prepare", prepare_inputs(), code_deps("stages.prepare"),
              ["seed", "data"],
              [str(PREPARED)], metrics=[str(REPORTS / "prepare.json")]),
        Stage("augment", "augmentation of the train rows, one method each (Tang et al.; TinyBERT)",
              "python -m stages.augment ${item}", [str(PREPARED)], augment_code,
              [*sorted({k for a in augmenters().values() for k in a.shared}), "augment.unlabelled", "augment.${item}"],
              [str(augmented_dir("${item}"))],
              metrics=[str(REPORTS / "augment" / "${item}.json")], foreach="${augment.methods}"),
        Stage("teacher_finetune", "fine-tune the pretrained teacher on the task",
              "python -m stages.teacher_finetune", [str(PREPARED)], code_deps("stages.teacher_finetune"),
              teacher.PARAMS, [str(TEACHER)],
              metrics=[str(REPORTS / "teacher.json")], plots=[str(HISTORY / "teacher.json")]),
        Stage("teacher_logits", "one pass of the fine-tuned teacher over train + augmented rows",
              "python -m stages.teacher_logits", [str(TEACHER), str(PREPARED), str(AUGMENTED)],
              code_deps("stages.teacher_logits"), ["precision", "teacher_logits", "data.max_length", "augment.methods"],
              [str(TEACHER_LOGITS)], metrics=[str(REPORTS / "teacher_logits.json")]),
        Stage("general_distill", "a small BERT learns the pretrained teacher on general text, one objective each",
              "python -m stages.general_distill ${item}", ["${general_distill.corpus}", str(PREPARED)], general_code,
              general.params_keys("${item}"),
              [str(general_dir("${item}"))], metrics=[str(REPORTS / "general_distill" / "${item}.json")],
              plots=[str(general_history("${item}"))], foreach="${general_distill.objectives}"),
        *(stage for method in methods().values() for stage in method_stages(method)),
        Stage("export", "every model as a served folder: HF/BiLSTM folder, ONNX fp32 (parity-checked), int8, card",
              "python -m stages.export", [str(PREPARED), str(TEACHER), "models/students"], code_deps("stages.export"),
              ["data", "teacher", "general_distill", *methods(), "export"], [str(EXPORTS)]),
        Stage("evaluate", "the teacher and every student in every runtime side by side: quality, size, speed",
              "python -m stages.evaluate", [str(EXPORTS), str(PREPARED), str(HISTORY)], code_deps("stages.evaluate"),
              ["evaluate"], [], metrics=[str(REPORTS / "metrics.json")],
              plots=[str(REPORTS / "plots" / f) for f in ("accuracy_latency.png", "size.png", "training_curves.png")],
              uncached_outs=[str(REPORTS / "report.md")]),
        Stage("select", "the student the select rule picks from evaluate's measurements, as a served folder",
              "python -m stages.select", [str(EXPORTS), str(REPORTS / "metrics.json")], code_deps("stages.select"),
              ["select", "evaluate.seed_spread"], [str(SELECTED)], metrics=[str(REPORTS / "selection.json")],
              plots=[str(REPORTS / "plots" / "frontier.png")], uncached_outs=[str(REPORTS / "selection.md")]),
    ]


# ---------------------------------------------------------------- rendering
HEADER = """\
# The DAG, rendered from pipeline/orchestration/dag.py and the method registry (pipeline/methods/) by
# `python -m pipeline dag`: edit those, not this file. Each stage is `python -m stages.<name>`; its
# `params` are the params.yaml keys it reads, so changing a key reruns exactly the stages that read it
# (and what follows them); its deps list the artifacts and the code it runs."""


def _list(key: str, items: list[str], pad: str, uncached: list[str] = ()) -> list[str]:
    if not items and not uncached:
        return []
    lines = [f"{pad}{key}:"] + [f"{pad}  - {item}" for item in items]
    for item in uncached:
        lines += [f"{pad}  - {item}:", f"{pad}      cache: false"]
    return lines


def render(stages: list[Stage]) -> str:
    lines = HEADER.splitlines() + ["stages:"]
    for s in stages:
        lines += ["", f"  # {s.comment}", f"  {s.name}:"]
        pad = "    "
        if s.foreach:
            lines += [f"    foreach: {s.foreach}", "    do:"]
            pad = "      "
        lines.append(f"{pad}cmd: {s.cmd}")
        lines += _list("deps", s.deps + s.code, pad)
        lines += _list("params", s.params, pad)
        lines += _list("outs", s.outs, pad, uncached=s.uncached_outs)
        lines += _list("metrics", [], pad, uncached=s.metrics)
        lines += _list("plots", [], pad, uncached=s.plots)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs from the rendering")
    args = parser.parse_args(argv)
    text = render(all_stages())
    path = ROOT / DVC_FILE
    if args.check:
        if path.read_text(encoding="utf-8") != text:
            print(f"error: {DVC_FILE} is not the rendering of the registry; run `python -m pipeline dag`", file=sys.stderr)
            sys.exit(1)
        return
    path.write_text(text, encoding="utf-8")
    print(f"{DVC_FILE}: {len(all_stages())} stages written")


if __name__ == "__main__":
    main()
