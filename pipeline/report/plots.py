"""Report figures: quality vs latency with the Pareto front, size on disk, training curves."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.report.evaluate import latency

RUNTIME_MARKERS = {"torch": "o", "onnx": "s", "int8": "^"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the (name, latency, quality) points no other point beats on both axes (lower latency
    and higher quality), ordered by latency: the models worth shipping at some latency budget."""
    front, best = [], float("-inf")
    for name, _latency, quality in sorted(points, key=lambda p: (p[1], -p[2])):
        if quality > best:
            front.append(name)
            best = quality
    return front


def plot_accuracy_latency(report: dict[str, Any], path: Path) -> list[str]:
    """Scatter of the main metric vs CPU latency at batch 1 (log scale), one point per model and runtime,
    the Pareto front drawn as a line. Returns the front."""
    import matplotlib.ticker

    plt = _pyplot()
    main = report["main_metric"]
    rows = report["models"]
    front = pareto_front([(n, r["latency_ms_b1"], r[main]) for n, r in rows.items()])
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for runtime, marker in RUNTIME_MARKERS.items():
        names = [n for n, r in rows.items() if r.get("runtime", "torch") == runtime]
        if names:
            ax.scatter([rows[n]["latency_ms_b1"] for n in names], [100 * rows[n][main] for n in names], s=40,
                       marker=marker, label=runtime, zorder=3)
    ax.plot([rows[n]["latency_ms_b1"] for n in front], [100 * rows[n][main] for n in front], "--", color="grey",
            drawstyle="steps-post", zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"CPU latency at batch 1, ms (log scale, {report['threads']} threads)")
    ax.set_ylabel(f"{main} (%)")
    ax.set_title(f"{report['task']}: quality vs latency")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    ordered = front + [n for n in rows if n not in front]  # the front's labels get the first choice of place
    place_labels(ax, [(n, rows[n]["latency_ms_b1"], 100 * rows[n][main], n in front) for n in ordered])
    fig.savefig(path, format="png")
    plt.close(fig)
    return front


# where a point's label may go, in points from the point: right above, right below, left above, left below,
# above, below
LABEL_PLACES = ((5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"),
                (-5, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"))


def place_labels(ax, labels: Sequence[tuple[str, float, float, bool]], marker_px: float = 6.0) -> list:
    """Annotate each (text, x, y, bold) point of `ax` in the first of LABEL_PLACES where its text covers no
    label placed before it, no point's marker, not the legend and nothing outside the axes (else where it
    covers least), so that models of about the same speed and quality stay readable. Call it once the
    layout is final. Returns the text artists."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform([(x, y) for _, x, y, _ in labels]) if labels else []
    taken = [Bbox.from_extents(px - marker_px, py - marker_px, px + marker_px, py + marker_px) for px, py in points]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))

    def covered(box) -> float:
        inside = Bbox.intersection(box, frame)
        outside = box.width * box.height - (inside.width * inside.height if inside else 0.0)
        return outside + sum(b.width * b.height for b in (Bbox.intersection(box, t) for t in taken) if b)

    texts = []
    for text, x, y, bold in labels:
        best = None
        for dx, dy, ha, va in LABEL_PLACES:
            artist = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                                 fontsize=7, fontweight="bold" if bold else "normal")
            box = artist.get_window_extent(renderer)
            cost = covered(box)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, artist, box)
            else:
                artist.remove()
            if cost == 0:
                break
        taken.append(best[2])
        texts.append(best[1])
    return texts


def plot_sizes(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars: size on disk of each model's weights per runtime (MB, log scale)."""
    plt = _pyplot()
    rows = report["models"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(7.5, 0.3 * len(names) + 1.2), dpi=120)
    colors = {"torch": "tab:blue", "onnx": "tab:orange", "int8": "tab:green"}
    ax.barh(names, [rows[n]["size_mb"] for n in names],
            color=[colors.get(rows[n].get("runtime", "torch"), "grey") for n in names])
    for i, name in enumerate(names):
        ax.annotate(f"{rows[name]['size_mb']:g}", (rows[name]["size_mb"], i), xytext=(3, -3),
                    textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("size of the weights on disk, MB (log scale)")
    ax.set_title(f"{report['task']}: model size (blue PyTorch, orange ONNX fp32, green ONNX int8)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def read_history(path: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(step, train loss) and (step, dev metric) points of a Trainer log history file."""
    history = json.loads(path.read_text(encoding="utf-8"))
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [(h["step"], v) for h in history if "step" in h
             for k, v in h.items() if k.startswith("eval_") and k.split("_", 1)[1] in ("accuracy", "f1", "mcc")]
    return losses, evals


def loss_scale(losses: Sequence[float], spread: float = 10.0) -> str:
    """"log" for a positive loss curve whose peak is over `spread` times its median (a few early spikes
    would flatten the rest of it on a linear axis), else "linear"."""
    if not losses or min(losses) <= 0:
        return "linear"
    ordered = sorted(losses)
    return "log" if ordered[-1] > spread * ordered[len(ordered) // 2] else "linear"


def log_tick(value: float, _position=None) -> str:
    """A log axis's tick label: 0.2, 0.5, 1, 2, 5, 10... written plainly (not 2x10^-1), the others blank."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5)) else ""


def plot_training_curves(histories: dict[str, Path], path: Path) -> None:
    """One panel per training run: train loss by step (on a log axis where spikes would flatten it), and
    the dev metric at each evaluation; a run that trained nothing (a teacher taken as given) has none."""
    import matplotlib.ticker

    plt = _pyplot()
    runs = {name: points for name, f in histories.items() if f.is_file() and any(points := read_history(f))}
    cols = 3
    rows_n = max(1, -(-len(runs) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 2.8 * rows_n), dpi=100, squeeze=False)
    for ax, (name, (losses, evals)) in zip(axes.flat, runs.items()):
        scale = loss_scale([loss for _, loss in losses])
        if losses:
            ax.plot(*zip(*losses), color="tab:blue", lw=1)
        if scale == "log":
            ax.set_yscale("log")
            for set_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                set_formatter(matplotlib.ticker.FuncFormatter(log_tick))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("train loss" + (" (log scale)" if scale == "log" else ""), fontsize=8, color="tab:blue")
        ax.tick_params(which="both", labelsize=7)
        if evals:
            twin = ax.twinx()
            twin.plot(*zip(*evals), "o-", color="tab:red", ms=3, lw=1)
            twin.set_ylabel("dev metric", fontsize=8, color="tab:red")
            twin.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def plot_frontier(report: dict[str, Any], selection: dict[str, Any], path: Path) -> None:
    """Retention of the teacher's main dev metric against latency, at batch 1 and per batch of
    evaluate.batch_size (log scales), one colour per runtime with its Pareto front, the teacher in each
    runtime as a star, the select floor as a line and the pick ringed."""
    import matplotlib.ticker

    plt = _pyplot()
    rows = report["models"]
    b = report["batch_size"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    labels: dict[Any, list] = {ax: [] for ax in axes}
    for ax, batch in zip(axes, (1, b)):
        for i, runtime in enumerate(RUNTIME_MARKERS):
            names = [n for n, r in rows.items() if r["runtime"] == runtime and r["retention"] is not None]
            if not names:
                continue
            color = f"C{i}"
            points = [(n, latency(report, rows[n], batch), 100 * rows[n]["retention"]) for n in names]
            students = [p for p in points if rows[p[0]]["model"] != "teacher"]
            ax.scatter([p[1] for p in students], [p[2] for p in students], s=30, color=color,
                       marker=RUNTIME_MARKERS[runtime], label=runtime, zorder=3)
            ax.scatter([p[1] for p in points if p not in students], [p[2] for p in points if p not in students],
                       s=110, color=color, marker="*", zorder=4, edgecolor="black", linewidth=0.5)
            front = pareto_front(students)
            by_name = {p[0]: p for p in students}
            ax.plot([by_name[n][1] for n in front], [by_name[n][2] for n in front], "--", color=color, lw=1,
                    drawstyle="steps-post", zorder=2)
            labels[ax] += [(rows[n]["model"], by_name[n][1], by_name[n][2], n == selection["row"]) for n in front]
        pick = rows[selection["row"]]
        if pick["retention"] is not None:  # None where the teacher's metric is 0 or below (a correlation can be)
            ax.scatter([latency(report, pick, batch)], [100 * pick["retention"]], s=260, facecolors="none",
                       edgecolors="red", linewidth=1.5, zorder=5, label=f"pick: {selection['row']}")
        floor = selection["select"]["min_retention"]
        if floor is not None:
            ax.axhline(100 * floor, color="red", lw=0.8, ls=":", label=f"floor {100 * floor:g}%")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("ms at batch 1 (log scale)" if batch == 1 else f"ms per batch of {batch} (log scale)")
        ax.set_ylabel("retention of the teacher's " + report["main_metric"] + " (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    cpu = report.get("cpu") or {}
    fig.suptitle(f"{report['task']}: the frontier of students (stars: the teacher; {report['threads']} threads"
                 + (f", {cpu['name']}" if cpu else "") + ")", fontsize=10)
    fig.tight_layout()
    for ax, found in labels.items():
        place_labels(ax, found)
    fig.savefig(path, format="png")
    plt.close(fig)
