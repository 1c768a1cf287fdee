"""Speed like for like, in one run: every exported model in every runtime at batch 1 and 32, its speed-up
over the teacher in the same runtime beside the FLOP ratio of the two shapes, the graphs each Transformer
export did not serve (fused or plain, fp32 and int8; static int8) and the plain int8 graph as onnxruntime
loads it by default (the baseline: the export as served before, with SkipLayerNormalization), the share
of the machine's measured GEMM peak that the teacher_logits pass reaches, and a table of the speed goals
with a verdict.

One process, fixed threads, models interleaved within every repetition, medians. Speeds are of the model
alone (tokenised beforehand) unless a column says "text" (raw text to logits, tokenisation included).
Each goal's ratio is measured again in paired rounds (the two sides back to back), so that a shared
machine's load, which comes and goes, moves both sides alike; a 95% interval for the median of the
rounds says whether the goal is met, missed, or too close to call on this machine. Reads the exports of
`dvc repro` (exports/<model>) and the run's data. Usage:

    python -m benchmarks.speed [--exports exports] [--threads 2] [--repeats 5] [--n 256] [--logits-rows 2000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.artifacts import EXPORTS, PREPARED, TEACHER_LOGITS, load_dataset_dir, texts_of
from pipeline.params.config import EvaluateConfig, load_params
from pipeline.report.evaluate import REFERENCE, measure_speed, row_name
from pipeline.serving.graphs import fuse, write_int8, write_onnx
from pipeline.serving.kinds import kind_of
from pipeline.serving.runtimes import (RUNTIMES, OnnxPredictor, Predictor, export_info, load_export, read_config,
                                       task_of)
from pipeline.training.inference import classifier_logits, use_bf16
from pipeline.training.logits import pass_teacher


# ---------------------------------------------------------------- FLOPs of a shape
def _lstm_flops(module: torch.nn.LSTM, inputs: tuple) -> int:
    """Multiply-adds x 2 of an LSTM over its (packed or padded) input: FlopCounterMode does not count LSTMs."""
    x = inputs[0]
    steps = int(x.batch_sizes.sum()) if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x.shape[0] * x.shape[1]
    dirs, width, total = 2 if module.bidirectional else 1, module.input_size, 0
    for _ in range(module.num_layers):
        total += dirs * steps * 2 * 4 * (width + module.hidden_size) * module.hidden_size
        width = dirs * module.hidden_size
    return total


def flops_per_example(predictor, texts, pairs) -> float:
    """FLOPs of the PyTorch model per example at batch 1 (no padding) over `texts`."""
    lstm_total = [0]
    hooks = [m.register_forward_pre_hook(lambda m, i: lstm_total.__setitem__(0, lstm_total[0] + _lstm_flops(m, i)))
             for m in predictor.model.modules() if isinstance(m, torch.nn.LSTM)]
    try:
        with FlopCounterMode(display=False) as counter:
            for _, feeds in predictor.batches(texts, pairs, 1):
                predictor.run(feeds)
    finally:
        for h in hooks:
            h.remove()
    return (counter.get_total_flops() + lstm_total[0]) / len(texts)


# ---------------------------------------------------------------- graph variants of a Transformer export
BASELINE = "int8-baseline"  # the plain int8 graph with all of onnxruntime's load-time fusions: the export
# as served before fused graphs were (the fused-int8 goal's baseline)


def graph_runtimes(folder: Path) -> dict[str, str]:
    """{"fp32 fused", "fp32 plain", "int8 fused", "int8 plain", "int8 dynamic", "int8 static", "int8 baseline":
    runtime name} of a Transformer export: the served graphs ("onnx", "int8"), the variants graph_variants
    makes, and the plain int8 graph loaded as onnxruntime loads it by default (BASELINE)."""
    info = export_info(folder)
    served, other = ("fused", "plain") if info.get("fused_operators") else ("plain", "fused")
    method = info["int8"].get("method", "dynamic")
    other_method = "dynamic" if method == "static" else "static"
    return {f"fp32 {served}": "onnx", f"int8 {served}": "int8", f"int8 {method}": "int8",
            f"fp32 {other}": f"onnx-{other}", f"int8 {other}": f"int8-{other}",
            f"int8 {other_method}": f"int8-{other_method}", "int8 baseline": BASELINE}


def graph_variants(folder: Path, work: Path, calibration: tuple[list[str], list[str] | None]) -> dict[str, Path]:
    """The graphs the export did not serve, of the same weights: the other graph (onnxruntime's fused
    operators saved in it, or the plain graph that onnxruntime fuses when it loads it) in fp32 and dynamic
    int8, and the served fp32 graph in the other int8 method (static: calibrated on train rows)."""
    info, task = export_info(folder), task_of(folder)
    fp32_other, int8_other, other_method = [r for r in graph_runtimes(folder).values()
                                            if r not in ("onnx", "int8", BASELINE)]
    max_length = int(info.get("max_length", 128))
    exportable = kind_of(read_config(folder)).prepare_export(folder, work / "model", task, max_length)
    fp32 = work / f"{fp32_other}.onnx"
    write_onnx(exportable.traced, exportable.sample(task), exportable.input_names, exportable.dynamic_axes, fp32)
    if fp32_other == "onnx-fused":
        fuse(fp32, *exportable.fusion)
    reduce_range = info["int8"].get("reduce_range", False)  # as the export made its int8 (8 bits before it said)
    write_int8(fp32, work / f"{int8_other}.onnx", reduce_range=reduce_range)
    write_int8(folder / RUNTIMES["onnx"], work / f"{other_method}.onnx",
               [f for _, f in exportable.batches(*calibration, 32)] if other_method == "int8-static" else None,
               reduce_range)
    return {variant: work / f"{variant}.onnx" for variant in (fp32_other, int8_other, other_method)}


# ---------------------------------------------------------------- GEMM peak and the teacher_logits pass
def gemm_peak(dtype: torch.dtype, repeats: int) -> float:
    """Best FLOP/s of square matrix products over a few sizes (median of repeats per size)."""
    best = 0.0
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times))
    return best


def teacher_logits_pass(rows: int, batch_size: int, max_length: int, bf16: bool) -> tuple[Callable[[], object], float, int]:
    """(run, FLOPs of one run, rows) of the teacher_logits pass as the stage runs it, over train + augmented
    rows (tokenisation included); `run` is warmed up."""
    task = task_of(EXPORTS / REFERENCE)
    texts, pairs = texts_of(load_dataset_dir(TEACHER_LOGITS if TEACHER_LOGITS.exists() else PREPARED / "train"),
                            task.is_pair)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    order = order[:rows]
    texts, pairs = [texts[i] for i in order], [pairs[i] for i in order] if pairs else None
    model, tokenizer = pass_teacher(bf16)

    def run():
        with torch.inference_mode():
            return classifier_logits(model, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length,
                                     progress=False, bf16=bf16)

    with FlopCounterMode(display=False) as counter:
        run()
    run()  # warm-up
    return run, counter.get_total_flops(), len(texts)


def gemm_shares(run: Callable[[], object], flops: float, dtype: torch.dtype, rounds: int,
                clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], list[float], list[float]]:
    """(share of the peak, the pass's FLOP/s, the peak) per round; a round measures the GEMM peak and then
    times one pass, so the two share the machine's state."""
    shares, achieved, peaks = [], [], []
    for _ in range(rounds):
        peak = gemm_peak(dtype, 3)
        start = clock()
        run()
        achieved.append(flops / (clock() - start))
        peaks.append(peak)
        shares.append(achieved[-1] / peak)
    return shares, achieved, peaks


# ---------------------------------------------------------------- the goals, measured in paired rounds
GOALS = {  # what a goal compares, and the ratio it asks for
    "int8_flop_share": ("student int8 x teacher int8 at batch 1, over the FLOP ratio", 0.8),
    "fused_int8": ("fused int8 graph / plain int8 graph at batch 1, same model", 1.3),
    "gemm_share": ("teacher_logits pass FLOP/s / measured GEMM peak, same precision", 0.7),
}


def paired_speedups(slow: Predictor, fast: Predictor, texts: Sequence[str], pairs: Sequence[str] | None,
                    rounds: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Speed-up of `fast` over `slow` at batch 1, model alone, one value per round: the ratio of the two
    models' median latencies over `texts`, timed one example at a time. In a round the two models run
    back to back (which goes first alternates), each over all the examples in a row, as a model serving a
    stream does (its weights stay in cache); so both see nearly the same machine state, and a load that
    comes and goes moves the two alike."""
    models = (slow, fast)
    singles = [[feeds for _, feeds in m.batches(texts, pairs, 1)] for m in models]
    for model, feeds in zip(models, singles):  # warm-up
        model.run(feeds[0])
    out = []
    for r in range(rounds):
        medians = [0.0, 0.0]
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            times = []
            for feeds in singles[k]:
                start = clock()
                models[k].run(feeds)
                times.append(clock() - start)
            medians[k] = statistics.median(times)
        out.append(medians[0] / medians[1])
    return out


def median_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, bool]:
    """(low, high, reached): a distribution-free interval for the median of `values`, the sorted values
    k+1 and n-k, with k as large as keeps the coverage, 1 - 2 P[Binomial(n, 1/2) <= k], at `level`. Under
    6 values not even the range reaches 95%: then the range, with reached False."""
    xs, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n

    if n < 2 or coverage(0) < level:
        return xs[0], xs[-1], False
    k = 0
    while k + 1 <= (n - 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return xs[k], xs[n - 1 - k], True


def verdict(values: Sequence[float], target: float) -> str:
    """`met` when the whole 95% interval of the median reaches the target, `missed` when none of it does,
    else `too close to call`; `undetermined` with too few rounds for such an interval (at least 6)."""
    low, high, reached = median_interval(values)
    if not reached:
        return "undetermined (too few rounds for a 95% interval)"
    return "met" if low >= target else "missed" if high < target else "too close to call"


def goal_row(goal: str, subject: str, values: Sequence[float]) -> str:
    what, target = GOALS[goal]
    low, high, _ = median_interval(values)
    return (f"| {what} | {subject} | {statistics.median(values):.2f} | {low:.2f}-{high:.2f} | {min(values):.2f}-"
            f"{max(values):.2f} | {target} | {verdict(values, target)} |")


def goal_rounds(exports: Path, models: list[str], predictors: dict[str, Predictor], flops: dict[str, float],
                texts: Sequence[str], pairs: Sequence[str] | None, rounds: int) -> list[str]:
    """The goal-table rows of the batch-1 goals, for every Transformer student and graph (plain and fused):
    its int8 speed-up over the teacher's int8 of the same graph, over the FLOP ratio of the two shapes; and
    for every Transformer, its fused int8 graph over its plain one."""
    out = []
    for model in models:
        if export_info(exports / model)["kind"] != "hf":
            continue
        names = graph_runtimes(exports / model)
        for graph in ("plain", "fused"):
            teacher = predictors.get(row_name(REFERENCE, names[f"int8 {graph}"]))
            student = predictors.get(row_name(model, names[f"int8 {graph}"]))
            if model != REFERENCE and teacher and student:
                flop_ratio = flops[REFERENCE] / flops[model]
                values = [x / flop_ratio for x in paired_speedups(teacher, student, texts, pairs, rounds)]
                out.append(goal_row("int8_flop_share", f"{model}, {graph} graph (FLOP ratio {flop_ratio:.2f})", values))
        fused = predictors.get(row_name(model, names["int8 fused"]))
        for against, subject in (("baseline", "the plain graph as onnxruntime loads it by default"),
                                 ("plain", "the plain graph as served")):
            plain = predictors.get(row_name(model, names[f"int8 {against}"]))
            if plain and fused:
                out.append(goal_row("fused_int8", f"{model}, against {subject}",
                                    paired_speedups(plain, fused, texts, pairs, rounds)))
    return out


# ---------------------------------------------------------------- the run
def _ratio(a, b) -> str:
    return "n/a" if a is None or b is None or not b else f"{a / b:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=EXPORTS, help="folder of export folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=256, help="dev examples per batch-32 measurement")
    parser.add_argument("--latency-samples", type=int, default=64, help="dev examples timed one at a time")
    parser.add_argument("--logits-rows", type=int, default=2000, help="rows of the teacher_logits pass timed")
    parser.add_argument("--rounds", type=int, default=20, help="paired rounds of each goal's measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.exports / REFERENCE).is_dir():
        raise SystemExit(f"error: {args.exports / REFERENCE}: no exported teacher; run `dvc repro` first")
    params = load_params()
    task = task_of(args.exports / REFERENCE)
    prepared = load_dataset_dir(PREPARED)
    texts, pairs = texts_of(prepared["dev"], task.is_pair)
    texts, pairs = texts[: args.n], pairs[: args.n] if pairs else None
    calibration = texts_of(prepared["train"].select(range(min(256, len(prepared["train"])))), task.is_pair)
    models = sorted((p.name for p in args.exports.iterdir() if export_info(p)),
                    key=lambda m: (m != REFERENCE, export_info(args.exports / m).get("order", 0)))

    with tempfile.TemporaryDirectory() as tmp:
        predictors, flops = [], {}
        for model in models:
            folder = args.exports / model
            served = [r for r in RUNTIMES if r != "int8" or export_info(folder)["int8"].get("served", True)]
            predictors += [load_export(folder, r, name=row_name(model, r), threads=args.threads) for r in served]
            flops[model] = flops_per_example(predictors[-len(served)], texts[: args.latency_samples],
                                             pairs[: args.latency_samples] if pairs else None)
            if export_info(folder)["kind"] == "hf":
                variants = graph_variants(folder, Path(tmp) / model, calibration)
                for variant, path in variants.items():
                    predictors.append(OnnxPredictor(row_name(model, variant), folder, str(path), threads=args.threads))
                plain_int8 = variants.get("int8-plain", folder / RUNTIMES["int8"])
                if plain_int8.is_file():  # not where the export left its int8 out
                    predictors.append(OnnxPredictor(row_name(model, BASELINE), folder, str(plain_int8.resolve()),
                                                    threads=args.threads, fusions_off=()))
        cfg = EvaluateConfig(threads=args.threads, batch_size=32, warmup=1, repeats=args.repeats,
                             latency_samples=args.latency_samples, runtimes=list(RUNTIMES))
        speed = measure_speed(predictors, texts, pairs, cfg)
        goal_rows = goal_rounds(args.exports, models, {p.name: p for p in predictors}, flops,
                                texts[: args.latency_samples], pairs[: args.latency_samples] if pairs else None,
                                args.rounds)

    print(f"\n{len(texts)} dev examples ({args.latency_samples} at batch 1), {args.threads} threads, "
          f"median of {args.repeats}; model-only unless 'text'; x = speed-up over the teacher in the same runtime")
    header = ["model", "runtime", "MFLOP/ex", "FLOP ratio", "b1 ex/s", "x b1", "x b1 / FLOP ratio", "b32 ex/s",
              "x b32", "b32 text ex/s", "x text"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for p in predictors:
        model, _, runtime = p.name.partition(":")
        runtime = runtime or "torch"
        m, t = speed[p.name], speed.get(row_name(REFERENCE, runtime))
        b1 = 1000 / m["model_latency_ms_b1"]
        flop_ratio = flops[REFERENCE] / flops[model]
        x_b1 = None if t is None else t["model_latency_ms_b1"] / m["model_latency_ms_b1"]
        cells = [model, runtime, f"{flops[model] / 1e6:.1f}", f"{flop_ratio:.2f}", f"{b1:.1f}", _ratio(x_b1, 1),
                 _ratio(x_b1, flop_ratio), f"{m['model_throughput_b32']:.1f}",
                 _ratio(m["model_throughput_b32"], t and t["model_throughput_b32"]), f"{m['throughput_b32']:.1f}",
                 _ratio(m["throughput_b32"], t and t["throughput_b32"])]
        print("| " + " | ".join(cells) + " |")

    print("\nGraphs of the same model: fused (onnxruntime's fused operators saved in the graph) against plain "
          "(fused by onnxruntime when it loads it), dynamic against static int8, and the plain int8 graph as served "
          "(no SkipLayerNormalization) against the baseline (onnxruntime's default load); > 1: the first is faster")
    pairs_of = [("fp32 fused", "fp32 plain"), ("int8 fused", "int8 plain"), ("int8 dynamic", "int8 static"),
                ("int8 plain", "int8 baseline")]
    print("| model | " + " | ".join(f"{a} / {b} {b_}" for a, b in pairs_of for b_ in ("b1", "b32")) + " |")
    print("|---|" + "---|" * 2 * len(pairs_of))
    for model in models:
        if export_info(args.exports / model)["kind"] != "hf":
            continue
        names = graph_runtimes(args.exports / model)
        cells = []
        for a, b in pairs_of:
            fast, slow = speed.get(row_name(model, names[a])), speed.get(row_name(model, names[b]))
            cells += [_ratio(slow and slow["model_latency_ms_b1"], fast and fast["model_latency_ms_b1"]),
                      _ratio(fast and fast["model_throughput_b32"], slow and slow["model_throughput_b32"])]
        print(f"| {model} | " + " | ".join(cells) + " |")
    print("(the int8 graph of another method is made from the served fp32 graph)")

    bf16 = use_bf16(params.precision)
    precision = "bf16" if bf16 else "fp32"
    run, pass_flops, rows = teacher_logits_pass(args.logits_rows, params.teacher_logits.batch_size,
                                                params.data.max_length, bf16)
    shares, achieved, peaks = gemm_shares(run, pass_flops, torch.bfloat16 if bf16 else torch.float32, args.rounds)
    rate = statistics.median(achieved)
    print(f"\nteacher_logits pass ({rows} train + augmented rows, batch {params.teacher_logits.batch_size}, "
          f"{precision}, tokenisation included), median of {args.rounds} rounds: {rows * rate / pass_flops:.1f} ex/s, "
          f"{rate / 1e9:.1f} GFLOP/s; the measured {precision} GEMM peak (square products up to 3072) "
          f"{statistics.median(peaks) / 1e9:.1f} GFLOP/s")
    goal_rows.append(goal_row("gemm_share", f"teacher_logits pass, {precision}", shares))

    print(f"\nGoals, each measured in {args.rounds} paired rounds (batch 1: the two models back to back over the "
          f"same {args.latency_samples} examples; GEMM: the peak, then the pass): median, "
          "95% interval of the median, and range of the rounds; met when the whole interval reaches the target")
    print("| goal | model | median | 95% interval | range | target | verdict |\n|---|---|---|---|---|---|---|")
    print("\n".join(goal_rows))


if __name__ == "__main__":
    main()
