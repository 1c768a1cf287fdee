"""Model cards: what a model is, how it was made, how good it is in each runtime, and how to load it
(README.md of every export folder)."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template
from typing import Any

from pipeline.params.config import flatten
from pipeline.serving.kinds import KINDS
from pipeline.serving.runtimes import INT8_FILE, ONNX_FILE, SLOW_FUSIONS, SUMMARY_FILE

TEACHER_METHOD = "fine-tuned teacher (Hugging Face Trainer, cross-entropy on gold labels)"
GIVEN_TEACHER = "the user's fine-tuned classifier, taken as given (teacher.finetune: false): not trained here"


def card_info(name: str, params) -> dict[str, Any]:
    """What a model card says about how a model was made: teacher, data, method and its params."""
    if name == "teacher":
        given = not params.teacher.finetune
        method, cfg = GIVEN_TEACHER if given else TEACHER_METHOD, params.teacher
        settings = cfg.model_dump(include={"pretrained", "finetune", "labels"} if given else None)
    else:
        m, cfg = params.students()[name]
        method = f"{m.title}: {m.summary}"
        settings = cfg.model_dump()
    info: dict[str, Any] = {
        "teacher": params.teacher.pretrained,
        "data": f"{params.data.task} from {params.data.source} (train rows: {params.data.max_train or 'all'})",
        "method": method,
        "params": flatten(settings),
    }
    ablation = m.ablations.get(name) if name != "teacher" else None
    if ablation is not None and ablation.base in params.section(m.name):
        info["ablation"] = {"base": ablation.base, "leaves_out": ablation.leaves_out, "paper": ablation.paper,
                            "paper_points": ablation.paper_points, "budget": ablation.budget(cfg, params)}
    init = getattr(cfg, "init", None)
    if init and init in params.general_distill.objectives:
        info["general_distillation"] = {"objective": init, **flatten(params.general_distill.settings(init))}
    return info


def _table(rows: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        text = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {cell(k)} | {cell(v)} |" for k, v in rows.items()]
    return "\n".join(lines)


def _usage(summary: dict[str, Any]) -> str:
    kind, pair = KINDS[summary["kind"]], summary["is_pair"]
    values = {"pair": ', "the second text"' if pair else "", "pair_list": ', ["the second text"]' if pair else ", None",
              "text_pair": ', "text_pair": "the second text"' if pair else "", "onnx": ONNX_FILE, "int8": INT8_FILE,
              "fusions": repr(list(SLOW_FUSIONS)), "max_length": summary["max_length"], "name": summary.get("name", ""),
              "inputs": ", ".join(summary.get("onnx_inputs", []))}
    torch_part, onnx_part = (Template(text).substitute(values) for text in (kind.torch_usage, kind.onnx_usage))
    example = "$'the first text\\tthe second text'" if pair else '"a gorgeous film"'
    cli = f"""```bash
python -m pipeline predict FOLDER {example}
python -m pipeline predict FOLDER --file texts.txt --json --runtime onnx   # or int8, torch
```"""
    if pair:
        cli += "\n\nPair task: every argument or line holds two tab-separated texts."
    folder = Path(summary["folder"])
    where = "" if folder.is_absolute() else (
        f"Paths are as seen from the folder that holds `{folder.parent}/` (the pipeline's repository root); from "
        "anywhere else, put this folder's own path in their place. ")
    where += f"Needs {kind.needs}."
    return (f"{where}\n\n### PyTorch\n\n{torch_part}\n\n### ONNX (onnxruntime)\n\n{onnx_part}\n\n"
            f"### Command line\n\n{cli}\n").replace("FOLDER", summary["folder"])


def parity_rows(summary: dict[str, Any]) -> dict[str, str]:
    rows = {"fp32 max abs logit diff vs PyTorch": f"{summary['onnx']['max_abs_diff']:.2e} "
                                                   f"(tolerance {summary['onnx']['tolerance']:g})",
            "int8 max abs logit diff vs fp32": f"{summary['int8']['max_abs_diff_vs_fp32']:.3g}"}
    if "argmax_agreement_vs_fp32" in summary["int8"]:
        rows["int8 argmax agreement with fp32"] = f"{100 * summary['int8']['argmax_agreement_vs_fp32']:.2f}%"
    rows["examples compared"] = f"{summary['parity_examples']} dev examples, mixed lengths per batch"
    return rows


def render_card(summary: dict[str, Any], card_info: dict[str, Any], files: dict[str, int]) -> str:
    """README.md: what the model is, how it was made and measured, and how to load it.

    card_info keys used: description, teacher, data, method, params; any others are listed under "Other
    details". Quality per runtime comes from summary["quality"]; speed is measured by the evaluate stage
    (a run's reports/report.md), not here, so an export is the same whenever it is made."""
    known = ("description", "teacher", "data", "method", "params")
    arch = KINDS[summary["kind"]].architecture
    overview = {
        "name": summary["name"], "architecture": arch, "parameters": f"{summary['parameters']:,}",
        "task": f"{summary['task']['name']} ({summary['task']['problem']}, "
                f"{'text pairs' if summary['is_pair'] else 'single sentences'})",
        "labels": ", ".join(summary["labels"]), "teacher": card_info.get("teacher", "n/a"),
        "data": card_info.get("data", "n/a"),
    }
    parts = [f"# {summary['name']}", ""]
    if card_info.get("description"):
        parts += [str(card_info["description"]), ""]
    kind = "regression model (a score)" if summary["task"]["problem"] == "regression" else "text classifier"
    parts += [f"A {summary['task']['name']} {kind} distilled and exported by bert-distill.", "",
              "## Model", "", _table(overview), "", "## Training", ""]
    parts += [f"Method: {card_info.get('method', 'n/a')}", ""]
    if card_info.get("params"):
        parts += [_table(card_info["params"]), ""]
    quality = {f"{metric} ({runtime})": value for runtime, row in summary.get("quality", {}).items()
               for metric, value in row.items()}
    parts += ["## Metrics", "", _table(quality) if quality else "Not measured.", "",
              "Speed: measured by the evaluate stage against the teacher in the same runtime (reports/report.md of "
              "the run that made this export).", ""]
    others = {k: v for k, v in card_info.items() if k not in known}
    if others:
        parts += ["## Other details", "", _table(others), ""]
    parts += ["## ONNX", "",
              f"Exported with {summary['exporter']}, opset {summary['opset']}; inputs "
              f"{', '.join(summary['onnx_inputs'])}, dynamic batch and sequence axes.", "",
              _table(parity_rows(summary)), "",
              "## Files", "", "| file | bytes |", "|---|---|"]
    parts += [f"| {name} | {size:,} |" for name, size in files.items()]
    parts += [f"| {SUMMARY_FILE} | (summary of this export) |", "", "## How to load", "", _usage(summary), ""]
    return "\n".join(parts)

