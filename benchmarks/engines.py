"""Inference engines side by side, for the teacher_logits pass (a long batched pass) and for serving
(batch 1): PyTorch (fp32, and bf16 where the CPU multiplies bf16 natively), ONNX Runtime and OpenVINO
(both on the export's served fp32 graph; OpenVINO in f32, and bf16 where the CPU has it), on the same
length-bucketed batches of the same rows, the same threads, in one process.

Each engine's logits are checked against PyTorch fp32's (the largest difference, and the share of rows
whose predicted label agrees); engines are interleaved within every round and each row of the table is
the median over rounds. Reads the exports of `dvc repro` (exports/<model>) and the teacher_logits rows.
OpenVINO is an optional dependency (`pip install -e ".[engines]"`); without it its rows are left out,
saying so. Usage:

    python -m benchmarks.engines [--models teacher tinybert4] [--n 2000] [--batch-sizes 128 1] [--threads 2] [--rounds 3]
        [--out reports/engines.md]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pipeline.artifacts import EXPORTS, PREPARED, TEACHER_LOGITS, load_dataset_dir, texts_of
from pipeline.serving.kinds import TRANSFORMER, Feeds
from pipeline.serving.runtimes import ONNX_FILE, OnnxPredictor, Runtime, load_export
from pipeline.training.inference import bf16_linears, bf16_native

Engine = Callable[[Feeds], np.ndarray]


def torch_engine(predictor, bf16: bool) -> Engine:
    """An export's PyTorch model in fp32, or as the teacher_logits pass runs it in bf16: Linear weights
    stored in bf16 once, under bf16 autocast."""
    if bf16:
        bf16_linears(predictor.model)

    def run(feeds: Feeds) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return np.asarray(predictor.run(feeds), dtype=np.float32)

    return run


def openvino_engines(folder: Path, threads: int, precisions: list[str]) -> dict[str, Engine]:
    """The export's served ONNX graph (the one onnxruntime runs, fused operators included) read by OpenVINO
    and compiled for the CPU in each of `precisions` ("f32", "bf16")."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(folder / ONNX_FILE))
    names = [i.get_any_name() for i in model.inputs]
    engines = {}
    for precision in precisions:
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                     "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})

        def run(feeds: Feeds, compiled=compiled) -> np.ndarray:
            return np.asarray(compiled([feeds[n] for n in names])[0], dtype=np.float32)

        engines[f"openvino {precision}"] = run
    return engines


def engines_for(folder: Path, threads: int) -> tuple[Runtime, dict[str, Engine], list[str]]:
    """The batching predictor of an export and every engine this machine can run it in, with notes on the
    engines left out."""
    torch_predictor = load_export(folder, "torch")
    bf16 = bf16_native(torch.device("cpu"))
    engines: dict[str, Engine] = {"torch fp32": torch_engine(torch_predictor, False)}
    notes = []
    if bf16 and torch_predictor.kind is TRANSFORMER:
        engines["torch bf16"] = torch_engine(load_export(folder, "torch"), True)
    engines["onnxruntime fp32"] = OnnxPredictor(folder.name, folder, threads=threads).run
    try:
        engines.update(openvino_engines(folder, threads, ["f32", "bf16"] if bf16 else ["f32"]))
    except ImportError:
        notes.append("OpenVINO is not installed (pip install -e \".[engines]\"): its rows are left out")
    return torch_predictor, engines, notes


def measure(batches: list[tuple[np.ndarray, Feeds]], engines: dict[str, Engine], rounds: int, rows: int
            ) -> dict[str, dict[str, float]]:
    """Rows per second of each engine over `batches` (median of `rounds`, engines interleaved), with the
    parity of its logits to the first engine's."""
    outputs: dict[str, np.ndarray] = {}
    for name, run in engines.items():  # warm-up, and the logits the parity check compares
        out = np.empty((rows, 0), dtype=np.float32)
        for idx, feeds in batches:
            part = run(feeds)
            if out.shape[1] == 0:
                out = np.zeros((rows, part.shape[-1]), dtype=np.float32)
            out[idx] = part
        outputs[name] = out
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, run in engines.items():
            start = time.perf_counter()
            for _, feeds in batches:
                run(feeds)
            times[name].append(time.perf_counter() - start)
    reference = outputs[next(iter(engines))]
    return {name: {"rows_per_s": rows / statistics.median(times[name]),
                   "max_diff": float(np.abs(outputs[name] - reference).max()),
                   "agree": float((outputs[name].argmax(-1) == reference.argmax(-1)).mean())
                   if reference.shape[1] > 1 else float("nan")}
            for name in engines}


def sample_texts(n: int) -> tuple[list[str], list[str] | None]:
    """`n` rows of the run's teacher_logits (train + augmented; prepared train before that stage ran),
    shuffled with a fixed seed."""
    source = load_dataset_dir(TEACHER_LOGITS) if TEACHER_LOGITS.exists() else load_dataset_dir(PREPARED)["train"]
    order = list(range(len(source)))
    random.Random(0).shuffle(order)
    rows = source.select(order[:n])
    return texts_of(rows, rows[0].get("text_pair") is not None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=EXPORTS)
    parser.add_argument("--models", nargs="+", default=["teacher", "tinybert4", "minilm4"])
    parser.add_argument("--n", type=int, default=2000, help="rows of the batched pass (train + augmented, shuffled)")
    parser.add_argument("--n-single", type=int, default=200, help="rows timed one at a time")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (e.g. reports/engines.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    texts, pairs = sample_texts(args.n)
    caps = torch.cpu.get_capabilities()
    flags = [f for f in ("avx2", "avx512_f", "avx512_vnni", "avx512_bf16", "amx_bf16") if caps.get(f)]
    lines = [f"CPU: {caps.get('cpu_name', 'unknown')} ({', '.join(flags)}); {args.threads} threads; {args.rounds} rounds, "
             f"medians; {args.n:,} rows at batch > 1, {min(args.n_single, args.n)} at batch 1.", "",
             "| model | batch | engine | rows/s | vs torch fp32 | vs onnxruntime | max abs logit diff | labels agree |",
             "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines))
    notes: set[str] = set()
    for model in args.models:
        folder = args.exports / model
        predictor, engines, left_out = engines_for(folder, args.threads)
        notes.update(left_out)
        for batch_size in args.batch_sizes:
            n = args.n if batch_size > 1 else min(args.n_single, args.n)
            batches = predictor.batches(texts[:n], pairs[:n] if pairs else None, batch_size)
            result = measure(batches, engines, args.rounds, n)
            base, ort = result["torch fp32"]["rows_per_s"], result["onnxruntime fp32"]["rows_per_s"]
            for name, r in result.items():
                agree = "-" if np.isnan(r["agree"]) else f"{100 * r['agree']:.2f}%"
                lines.append(f"| {model} | {batch_size} | {name} | {r['rows_per_s']:,.1f} | {r['rows_per_s'] / base:.2f}x | "
                             f"{r['rows_per_s'] / ort:.2f}x | {r['max_diff']:.2e} | {agree} |")
                print(lines[-1])
    for note in sorted(notes):
        lines += ["", note]
        print(f"\n{note}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
