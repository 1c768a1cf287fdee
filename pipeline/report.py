"""The evaluate stage's outputs: reports/metrics.json, reports/report.md and the figures under
reports/plots/ (quality vs latency with the Pareto front, size, training curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path, write_json
from pipeline.evaluate import markdown_table
from pipeline.plots import plot_accuracy_latency, plot_sizes, plot_training_curves


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


def render_report(report: dict[str, Any]) -> str:
    main = report["main_metric"]
    teacher = report["models"][report["reference"]]
    front = ", ".join(report.get("pareto_front", []))
    return "\n".join([
        f"# {report['task']}: teacher vs students",
        "",
        f"Every student in PyTorch, ONNX fp32 and ONNX int8 (what `exports/` serves); {main} on the dev split, "
        f"retention = student / teacher ({100 * teacher[main]:.2f}). CPU speed from raw text to logits, "
        f"{report['threads']} threads, medians of repeated runs, models interleaved.",
        "",
        markdown_table(report),
        "",
        f"Pareto front (no model is both faster at batch 1 and better): {front}.",
        "",
        "![quality vs latency](plots/accuracy_latency.png)",
        "",
        "![size](plots/size.png)",
        "",
        "![training curves](plots/training_curves.png)",
        "",
    ])
