"""The evaluate stage's work: export every model, measure every runtime side by side, write the report,
the figures and a model card per export.

Order matters: exports come first (ONNX fp32 with its parity check, int8), so the numbers in the report
are those of what will be served; the cards are completed last with those numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import Params, flatten
from pipeline.data import atomic_path, remove_path, texts_of, write_json
from pipeline.evaluate import evaluate_models, markdown_table, row_name
from pipeline.export import CARD_FILE, SUMMARY_FILE, export_model, load_export, render_card
from pipeline.plots import plot_accuracy_latency, plot_sizes, plot_training_curves
from pipeline.tasks import Task

log = logging.getLogger(__name__)

METHODS = {
    "teacher": "fine-tuned teacher (Hugging Face Trainer, cross-entropy on gold labels)",
    "students": "Tang et al. 2019: BiLSTM student, MSE to the teacher's logits (mixed with CE by alpha) "
                "on train + augmented rows",
    "distil": "DistilBERT-style: every other fine-tuned teacher layer copied into a shallower BERT, trained "
              "with soft CE at T + hard CE + last-hidden-state cosine",
    "tinybert": "TinyBERT: general distillation on a general corpus, then intermediate-layer (embeddings, "
                "hidden states, attention scores) and prediction-layer (soft CE) task distillation",
    "minilmv2": "MiniLMv2: general distillation of one teacher layer's (the last by default) query-query, key-key and value-value "
                "self-attention relations (KL, relation heads), the same relations at task level, then "
                "prediction-layer soft CE",
    "lrc": "LRC-BERT: COS-NCE (contrastive, angular distance to the teacher's intermediate layers against "
           "negatives) alone, then soft CE + hard CE + COS-NCE, with gradient perturbation of the embeddings",
}


def model_sections(params: Params) -> dict[str, str]:
    """Each evaluated model's params section: teacher first, then every student."""
    out = {"teacher": "teacher"}
    for section in ("students", "distil", "twostep"):
        out.update({name: section for name in getattr(params, section)})
    return out


def card_info(name: str, section: str, params: Params, task: Task) -> dict[str, Any]:
    cfg = params.teacher if section == "teacher" else getattr(params, section)[name]
    info: dict[str, Any] = {
        "teacher": params.teacher.pretrained,
        "data": f"{task.name} from {params.data.source} (train rows: {params.data.max_train or 'all'})",
        "method": METHODS[cfg.method if section == "twostep" else section],
        "params": flatten(cfg.model_dump()),
    }
    if section == "twostep" and cfg.init != "random":
        info["general_distillation"] = {"objective": cfg.init,
                                        **flatten(params.general_distill.settings(cfg.init))}
    return info


def export_all(models: dict[str, Path], sections: dict[str, str], params: Params, task: Task, dev,
               exports: Path) -> dict[str, dict[str, Any]]:
    """Export each model to exports/<name>; on any failure remove every export (no partial set)."""
    texts, pairs = texts_of(dev, task.is_pair)
    summaries = {}
    try:
        for name, folder in models.items():
            log.info("exporting %s", name)
            summaries[name] = export_model(folder, exports / name, name=name, task=task, dev_texts=texts,
                                           dev_pairs=pairs, max_length=params.data.max_length,
                                           card_info=card_info(name, sections[name], params, task))
    except BaseException:
        remove_path(exports)
        raise
    return summaries


def complete_cards(summaries: dict[str, dict[str, Any]], report: dict[str, Any], exports: Path) -> None:
    """Rewrite each export's model card and summary with its measured quality and speed per runtime."""
    main = report["main_metric"]
    for name, summary in summaries.items():
        rows = {r: report["models"][key] for r in ("torch", "onnx", "int8")
                if (key := row_name(name, r)) in report["models"]}
        info = dict(summary["card_info"])
        info["metrics"] = {f"{metric} ({runtime})": row[metric] for runtime, row in rows.items()
                           for metric in row if metric.startswith(("dev_", "test_"))}
        if "retention" in rows.get("torch", {}):
            info["metrics"][f"retention of the teacher's {main}"] = rows["torch"]["retention"]
        info["speed"] = {f"{key} ({runtime})": row[key] for runtime, row in rows.items()
                         for key in row if key.startswith(("latency", "throughput", "speedup"))}
        info["speed"]["threads"] = report["threads"]
        summary = {**summary, "card_info": info}
        folder = exports / name
        with atomic_path(folder / CARD_FILE) as tmp:
            files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
            tmp.write_text(render_card(summary, info, files), encoding="utf-8")
        write_json(folder / SUMMARY_FILE, summary)


def quality_splits(prepared, wanted: list[str]) -> dict[str, Any]:
    """The prepared splits quality is measured on: those in `wanted` that exist, and dev always (retention
    and the Pareto front are read on dev). Unlabelled splits are skipped later, by evaluate_models."""
    return {name: prepared[name] for name in ("train", "dev", "test")
            if name in prepared and (name in wanted or name == "dev")}


def evaluate_and_export(params: Params, task: Task, prepared, teacher_dir: Path, student_dirs: dict[str, Path],
                        exports: Path, reports: Path) -> dict[str, Any]:
    """Export all models, evaluate the teacher (PyTorch) and every student in PyTorch, ONNX fp32 and
    ONNX int8, write reports/metrics.json, report.md, the figures and the cards. Returns the report."""
    sections = model_sections(params)
    models = {"teacher": teacher_dir, **student_dirs}
    summaries = export_all(models, sections, params, task, prepared["dev"], exports)
    threads = params.evaluate.threads
    predictors = [load_export(exports / "teacher", "torch", name="teacher")]
    for name in student_dirs:
        predictors += [load_export(exports / name, runtime, name=row_name(name, runtime), threads=threads)
                       for runtime in params.evaluate.runtimes]
    report = evaluate_models(task, predictors, quality_splits(prepared, params.evaluate.splits), params.evaluate)
    for row in report["models"].values():
        row["onnx_parity_max_abs_diff"] = summaries[row["model"]]["onnx"]["max_abs_diff"]
    complete_cards(summaries, report, exports)
    plots = reports / "plots"
    with atomic_path(plots / "accuracy_latency.png") as tmp:
        report["pareto_front"] = plot_accuracy_latency(report, tmp)
    with atomic_path(plots / "size.png") as tmp:
        plot_sizes(report, tmp)
    histories = {name: reports / "history" / f"{name}.json" for name in models}
    histories |= {f"{name} (step 1)": reports / "history" / f"{name}_intermediate.json" for name in params.twostep}
    histories |= {f"general_distill ({objective})": reports / "history" / f"general_distill_{objective}.json"
                  for objective in params.general_distill.objectives}
    with atomic_path(plots / "training_curves.png") as tmp:
        plot_training_curves(histories, tmp)
    write_json(reports / "metrics.json", report)
    with atomic_path(reports / "report.md") as tmp:
        tmp.write_text(render_report(report), encoding="utf-8")
    return report


def render_report(report: dict[str, Any]) -> str:
    main = report["main_metric"]
    teacher = report["models"]["teacher"]
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
