"""Report numbers from fixed inputs (metrics, ratios to the teacher), the Pareto front, the figures, what
evaluate reports of an int8 left out, and that an export failure leaves no export behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.report import plots
from pipeline.report.plots import pareto_front, plot_accuracy_latency, plot_sizes, plot_training_curves
from pipeline.tasks import compute_metrics, preset_task


def test_metrics_from_fixed_logits():
    # gold 1 1 1 0 0 0 1 0; predicted 1 1 0 0 1 0 1 1: TP 3, FN 1, TN 2, FP 2
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0, -1])  # the last row is unlabelled: not counted
    pred = np.array([1, 1, 0, 0, 1, 0, 1, 1, 0])
    logits = np.stack([1 - pred, pred], axis=1).astype(float)
    metrics = compute_metrics(preset_task("mrpc"), logits, gold)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    from pipeline.tasks import mcc

    expected_mcc = (3 * 2 - 2 * 1) / np.sqrt((3 + 2) * (3 + 1) * (2 + 2) * (2 + 1))
    assert mcc(pred[:8], gold[:8]) == pytest.approx(expected_mcc)
    assert compute_metrics(preset_task("sst2"), logits, gold) == {"accuracy": pytest.approx(5 / 8)}


def test_ratios_to_the_teacher_compare_the_same_runtime():
    from pipeline.report.evaluate import add_ratios

    def row(runtime, metric, params, ms, per_s):
        return {"runtime": runtime, "dev_accuracy": metric, "parameters": params, "latency_ms_b1": ms,
                "throughput_b32": per_s, "model_latency_ms_b1": ms / 2, "model_throughput_b32": 2 * per_s}

    rows = {"teacher": row("torch", 0.80, 22_000_000, 12.0, 200.0), "teacher:int8": row("int8", 0.79, 22_000_000, 6.0, 500.0),
            "s": row("torch", 0.78, 5_500_000, 3.0, 900.0), "s:int8": row("int8", 0.76, 5_500_000, 1.5, 1800.0),
            "s:onnx": row("onnx", 0.78, 5_500_000, 2.0, 1000.0)}
    add_ratios(rows, "dev_accuracy", 32)
    assert rows["teacher"]["retention"] == 1.0 and rows["teacher"]["compression"] == 1.0
    assert rows["teacher:int8"]["speedup_b1"] == 1.0 and rows["teacher:int8"]["retention"] == 0.9875
    assert rows["s"]["retention"] == 0.975 and rows["s"]["compression"] == 4.0
    assert rows["s"]["speedup_b1"] == 4.0 and rows["s"]["speedup_throughput"] == 4.5
    assert rows["s"]["model_speedup_b1"] == 4.0 and rows["s"]["model_speedup_throughput"] == 4.5
    # int8 against the teacher in int8 (4x), not against the teacher in PyTorch (8x)
    assert rows["s:int8"]["retention"] == 0.95 and rows["s:int8"]["speedup_b1"] == 4.0
    assert rows["s:int8"]["speedup_throughput"] == 3.6
    # no teacher row in ONNX: no speed-up rather than a cross-runtime one
    assert rows["s:onnx"]["speedup_b1"] is None and rows["s:onnx"]["model_speedup_throughput"] is None
    # a teacher no better than chance (a correlation of 0 or below): no retention, not -250%
    rows = {"teacher": row("torch", -0.17, 22_000_000, 12.0, 200.0), "s": row("torch", 0.43, 5_500_000, 3.0, 900.0)}
    add_ratios(rows, "dev_accuracy", 32)
    assert rows["teacher"]["retention"] is None and rows["s"]["retention"] is None and rows["s"]["speedup_b1"] == 4.0


def test_pareto_front_keeps_only_undominated_models():
    points = [("teacher", 18.0, 0.86), ("bilstm", 1.2, 0.82), ("tiny:int8", 3.0, 0.84), ("tiny", 6.0, 0.84),
              ("slow_bad", 20.0, 0.80), ("fast_bad", 1.0, 0.70)]
    assert pareto_front(points) == ["fast_bad", "bilstm", "tiny:int8", "teacher"]


def _image(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))


def test_labels_of_crowded_points_do_not_cover_each_other_nor_points_nor_leave_the_axes():
    """Models of about the same latency and quality (students in one runtime) keep readable labels."""
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    points = [("tinybert4:onnx", 1.81, 84.86), ("bilstm_kd", 1.85, 84.86), ("minilm4:onnx", 1.89, 85.0),
              ("distil3:onnx", 1.84, 84.7), ("lrc4:onnx", 1.87, 84.95), ("teacher", 8.7, 87.4), ("edge", 0.3, 81.0)]
    ax.scatter([x for _, x, _ in points], [y for _, _, y in points])
    ax.set_xscale("log")
    ax.set_xlim(0.25, 10)
    fig.tight_layout()
    texts = plots.place_labels(ax, [(name, x, y, False) for name, x, y in points])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert [t.get_text() for t in texts] == [name for name, _, _ in points]
    frame = ax.get_window_extent(renderer)
    markers = ax.transData.transform([(x, y) for _, x, y in points])
    for i, box in enumerate(boxes):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, points[i]
        assert not any(box.overlaps(other) for other in boxes[:i]), points[i]
        assert not any(box.contains(px, py) for px, py in markers), points[i]
    plt.close(fig)


def test_a_loss_curve_with_spikes_far_above_the_rest_gets_a_log_axis_with_plain_labels():
    spiky = [4.0, 30.0, 2.5] + [0.4] * 20  # an early spike would flatten the rest on a linear axis
    assert plots.loss_scale(spiky) == "log"
    assert plots.loss_scale([0.7, 0.6, 0.45, 0.3, 0.25, 0.2]) == "linear"
    assert plots.loss_scale([3.0, -1.0, 0.1]) == "linear" and plots.loss_scale([]) == "linear"  # no log of <= 0
    assert [plots.log_tick(v) for v in (0.2, 0.3, 0.5, 1.0, 2.0, 7.0, 10.0, 0.005)] == \
        ["0.2", "", "0.5", "1", "2", "", "10", "0.005"]


def test_figures_are_written_and_show_their_data(tmp_path):
    report = {"task": "sst2", "main_metric": "dev_accuracy", "threads": 2, "models": {
        "teacher": {"runtime": "torch", "dev_accuracy": 0.86, "latency_ms_b1": 18.0, "size_mb": 87.0},
        "s": {"runtime": "torch", "dev_accuracy": 0.82, "latency_ms_b1": 4.0, "size_mb": 55.0},
        "s:int8": {"runtime": "int8", "dev_accuracy": 0.81, "latency_ms_b1": 2.0, "size_mb": 14.0}}}
    assert plot_accuracy_latency(report, tmp_path / "a.png") == ["s:int8", "s", "teacher"]
    plot_sizes(report, tmp_path / "b.png")
    history = tmp_path / "h.json"
    history.write_text(json.dumps([{"step": 50, "loss": 0.7}, {"step": 100, "loss": 0.5},
                                   {"step": 100, "eval_accuracy": 0.8, "eval_loss": 0.4}]))
    plot_training_curves({"s": history, "missing": tmp_path / "nope.json"}, tmp_path / "c.png")
    plot_training_curves({}, tmp_path / "empty.png")
    for name in ("a", "b", "c"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # a figure with its data differs from one without: the points and bars are drawn
    sizes = _image(tmp_path / "b.png")
    report["models"]["s"]["size_mb"] = 5.0
    plot_sizes(report, tmp_path / "b2.png")
    assert sizes.shape != _image(tmp_path / "b2.png").shape or not np.array_equal(sizes, _image(tmp_path / "b2.png"))
    assert not np.array_equal(_image(tmp_path / "c.png"), _image(tmp_path / "empty.png"))


def test_quality_splits_follow_the_param_and_always_keep_dev():
    from pipeline.serving.export import quality_splits

    prepared = {"train": "T", "dev": "D", "test": "X"}
    assert quality_splits(prepared, ["dev"]) == {"dev": "D"}
    assert quality_splits(prepared, ["train"]) == {"train": "T", "dev": "D"}
    assert quality_splits({"train": "T", "dev": "D"}, ["train", "dev", "test"]) == {"train": "T", "dev": "D"}


def test_one_failing_export_leaves_no_export_behind(tmp_path, tiny_teacher):
    import datasets

    from pipeline.errors import ModelError
    from pipeline.params.config import ExportConfig
    from pipeline.serving.export import export_all

    dev = datasets.Dataset.from_dict({"text": ["a fine film", "dull"], "text_pair": [None, None], "label": [1, 0]})
    exports = tmp_path / "exports"
    models = {"teacher": (tiny_teacher, {}, {}), "broken": (tmp_path / "no_such_model", {}, {})}
    with pytest.raises(ModelError, match="no_such_model"):
        export_all(models, preset_task("sst2"), {"dev": dev}, ExportConfig(), 128, exports)
    assert not exports.exists() and list(tmp_path.iterdir()) == []


def test_an_int8_left_out_by_its_export_is_not_served_and_the_report_says_why(tmp_path, tiny_teacher, monkeypatch):
    import datasets

    from pipeline.params.config import EvaluateConfig, ExportConfig
    from pipeline.report.evaluate import evaluate_exports
    from pipeline.report.outputs import render_report
    from pipeline.serving import export as export_module
    from pipeline.serving.runtimes import INT8_FILE

    measured = export_module.quality

    def student_int8_worse(predictor, task, splits, per_class=False):  # the student's int8 loses 50 points
        row = measured(predictor, task, splits, per_class)
        hit = getattr(predictor, "path", None) is not None and predictor.path.name == INT8_FILE
        return {k: v - 0.5 for k, v in row.items()} if hit and predictor.name == "s" else row

    monkeypatch.setattr(export_module, "quality", student_int8_worse)
    dev = datasets.Dataset.from_dict({"text": ["a fine film", "dull", "a joy", "a mess"], "text_pair": [None] * 4,
                                      "label": [1, 0, 1, 0]})
    exports = tmp_path / "exports"
    export_module.export_all({"teacher": (tiny_teacher, {}, {}), "s": (tiny_teacher, {}, {})}, preset_task("sst2"),
                             {"dev": dev}, ExportConfig(int8_max_drop=1.0), 128, exports)
    cfg = EvaluateConfig(warmup=0, repeats=1, latency_samples=2, batch_size=2, threads=1)
    report = evaluate_exports(exports, ["a fine film", "dull"], None, cfg)
    assert set(report["models"]) == {"teacher", "teacher:onnx", "teacher:int8", "s", "s:onnx"}
    assert list(report["int8_left_out"]) == ["s"] and "s: int8 loses 50.00 points" in report["int8_left_out"]["s"]
    assert "Left out of serving (int8 lost too much against ONNX fp32): s: int8 loses 50.00 points" in render_report(
        report)
    import torch  # the timings name the CPU that made them, with the instruction sets that move them

    flags = report["cpu"]["flags"]
    assert report["cpu"]["name"] and report["cpu"]["cores"] >= 1 and ("avx2" in flags) == torch.cpu.get_capabilities()["avx2"]
    assert f"of {report['cpu']['name']} ({', '.join(flags) or 'no AVX2'})" in render_report(report)


def test_ablation_costs_are_points_against_the_student_they_ablate_beside_the_paper():
    from pipeline.report.evaluate import ablation_costs
    from pipeline.report.outputs import ablation_section, agrees

    ablation = {"base": "full", "leaves_out": "data augmentation", "paper": "w/o DA (a table)", "paper_points": 7.2,
                "budget": "1 epoch"}
    summaries = {"teacher": {}, "full": {"card_info": {}}, "noaug": {"card_info": {"ablation": ablation}},
                 "orphan": {"card_info": {"ablation": {**ablation, "base": "missing"}}}}
    rows = {"teacher": {"dev_accuracy": 0.9}, "full": {"dev_accuracy": 0.85}, "noaug": {"dev_accuracy": 0.8325},
            "orphan": {"dev_accuracy": 0.5}}
    costs = ablation_costs(summaries, rows, "dev_accuracy")
    assert set(costs) == {"noaug"} and costs["noaug"]["points"] == 1.75  # 85.00 - 83.25
    lines = ablation_section({"ablations": costs, "main_metric": "dev_accuracy"})
    row = next(line for line in lines if line.startswith("| noaug"))
    assert "| -1.75 | -7.2: w/o DA (a table) | differs | 1 epoch |" in row
    assert agrees(6.5, 7.2) == "about the paper's" and agrees(0.4, 0.3) == "about the paper's"
    assert agrees(1.75, 7.2) == "differs" and agrees(3.0, None) == "no paper cell"
    assert ablation_section({"ablations": {}, "main_metric": "dev_accuracy"}) == []


def test_shipped_ablations_name_a_shipped_base_and_reach_the_model_cards():
    from pipeline.params.config import Params
    from pipeline.params.profile import profile_params
    from pipeline.serving.card import card_info

    profiles = Path(__file__).resolve().parents[1] / "profiles"
    full, ablations = profile_params("full", profiles), profile_params("ablations", profiles)
    default = {"bilstm_nokd"}
    tinybert = {"tinybert4_nogd", "tinybert4_slice", "tinybert4_noaug"}
    at_budget = {"tinybert4_nogd", "tinybert4_slice", "tinybert4_uniform"}
    for params, expected in ((Params(), default), (full, default | tinybert), (ablations, default | at_budget)):
        students = params.students()
        for name, (method, cfg) in students.items():
            ablation = method.ablations.get(name)
            if ablation is None:
                continue
            assert ablation.base in params.section(method.name)  # compared with a student of its own method
            info = card_info(name, params)["ablation"]
            assert info["base"] == ablation.base and info["budget"] == ablation.budget(cfg, params)
        assert {n for n, (m, _) in students.items() if n in m.ablations} == expected
    assert "ablation" not in card_info("tinybert4", params) and "ablation" not in card_info("teacher", params)
