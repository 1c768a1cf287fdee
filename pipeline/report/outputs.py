"""The evaluate stage's outputs: reports/metrics.json, reports/report.md and the figures under
reports/plots/ (quality vs latency with the Pareto front, size, training curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path, write_json
from pipeline.report.evaluate import markdown_table, recall_table
from pipeline.report.plots import plot_accuracy_latency, plot_sizes, plot_training_curves


def write_report(report: dict[str, Any], histories: dict[str, Path], reports: Path) -> None:
    """Figures first (the Pareto front goes into the report), then metrics.json and report.md."""
    plots = reports / "plots"
    with atomic_path(plots / "accuracy_latency.png") as tmp:
        report["pareto_front"] = plot_accuracy_latency(report, tmp)
    with atomic_path(plots / "size.png") as tmp:
        plot_sizes(report, tmp)
    with atomic_path(plots / "training_curves.png") as tmp:
        plot_training_curves(histories, tmp)
    write_json(reports / "metrics.json", report)
    with atomic_path(reports / "report.md") as tmp:
        tmp.write_text(render_report(report), encoding="utf-8")


def agrees(points: float, paper: float | None) -> str:
    """Whether a cost measured here is about what the paper measured: within a point, or within half of it."""
    if paper is None:
        return "no paper cell"
    return "about the paper's" if abs(points - paper) <= max(1.0, 0.5 * abs(paper)) else "differs"


def ablation_section(report: dict[str, Any]) -> list[str]:
    ablations = report.get("ablations") or {}
    if not ablations:
        return []
    lines = ["", "## Ablations", "",
             f"What leaving one part out costs here (points of {report['main_metric']}, PyTorch, against the student "
             "it ablates; one seed, see `python -m benchmarks.seeds` for the spread over seeds), beside what the "
             "method's paper measured for the same change on its own tasks and budget. Where the two differ, the "
             "last column says how this run's budget differs from the paper's.", "",
             "| ablation | leaves out | against | cost here | in the paper | agrees? | this run's budget |",
             "|---|---|---|---|---|---|---|"]
    for name, a in ablations.items():
        paper = "n/a" if a["paper_points"] is None else f"{-a['paper_points']:+.1f}"
        lines.append(f"| {name} | {a['leaves_out']} | {a['base']} | {0.0 - a['points']:+.2f} | {paper}: {a['paper']} | "
                     f"{agrees(a['points'], a['paper_points'])} | {a['budget']} |")
    return lines


def warnings_section(report: dict[str, Any]) -> list[str]:
    found = report.get("warnings") or []
    return ["**Warnings**", "", *(f"- {line}" for line in found), ""] if found else []


def recall_section(report: dict[str, Any]) -> list[str]:
    table = recall_table(report)
    return ["", "## Recall of each class", "",
            "The classes are imbalanced (one has at least twice the train rows of another): how many of each "
            "class's dev rows each model finds (PyTorch). A rare class a model never predicts shows here as 0, "
            "where accuracy hardly moves.", "", table] if table else []


def machine(report: dict[str, Any]) -> str:
    """' of <CPU> (<flags>), <n> cores' where the report names the CPU that timed it, else ''."""
    cpu = report.get("cpu")
    return f" of {cpu['name']} ({', '.join(cpu['flags']) or 'no AVX2'}), {cpu['cores']} cores" if cpu else ""


def render_report(report: dict[str, Any]) -> str:
    main = report["main_metric"]
    teacher = report["models"][report["reference"]]
    front = ", ".join(report.get("pareto_front", []))
    base = report.get("baseline")
    return "\n".join([
        f"# {report['task']}: teacher vs students",
        "",
        *warnings_section(report),
        f"The teacher and every student in each runtime that `exports/` serves (PyTorch, ONNX fp32, ONNX int8); "
        f"{main} on the dev split, retention = model / teacher in PyTorch ({100 * teacher[main]:.2f}"
        f"{'' if teacher[main] > 0 else '; n/a: the teacher is no better than chance'}). "
        + (f"The baseline learns nothing but train's labels (always {base['predicts']}: {100 * base[main]:.2f}); "
           "gain share = the model's gain over it / the teacher's gain over it, so a teacher near the baseline "
           "shows as one. " if base else "") +
        f"Speed on {report['threads']} CPU threads{machine(report)}, medians of repeated runs with the models interleaved: "
        f"from raw text to logits (tokenisation included, as served) and of the model alone (tokenised beforehand). "
        f"Every speed-up (x) is against the teacher in the same runtime and batch size.",
        "",
        markdown_table(report),
        "",
        f"Pareto front (no model is both faster at batch 1 and better): {front}.",
        *recall_section(report),
        *ablation_section(report),
        *(["", f"Left out of serving (int8 lost too much against ONNX fp32): "
               f"{'; '.join(report['int8_left_out'].values())}."]
          if report.get("int8_left_out") else []),
        "",
        "![quality vs latency](plots/accuracy_latency.png)",
        "",
        "![size](plots/size.png)",
        "",
        "![training curves](plots/training_curves.png)",
        "",
    ])
