"""Serving throughput of the teacher and every exported student, in every runtime, in one run.

Teacher in PyTorch; each student in PyTorch, ONNX fp32 and ONNX int8; throughput (examples/s, raw text
to logits) at batch 1 and batch 32 on real dev sentences, medians of interleaved repetitions with fixed
threads, and the ratio to the teacher. Targets on 2 CPU cores: int8 4-layer student >= 4x the teacher,
BiLSTM >= 20x. Reads the exports written by `dvc repro` (exports/<model>). Usage:

    python -m benchmarks.throughput [--exports exports] [--threads 2] [--repeats 5] [--n 256]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from pipeline.artifacts import EXPORTS, PREPARED, load_dataset_dir, texts_of
from pipeline.evaluate import row_name
from pipeline.runtimes import load_export, task_of


def throughput(predictor, texts, pairs, batch_size: int, repeats: int) -> list[float]:
    """examples/s over the whole text list, one measurement per repeat."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predictor.logits(texts[i:i + batch_size], pairs[i:i + batch_size] if pairs else None, batch_size)
        out.append(len(texts) / (time.perf_counter() - start))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=EXPORTS, help="folder of export folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=256, help="dev sentences per measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.exports / "teacher").is_dir():
        raise SystemExit(f"error: {args.exports / 'teacher'}: no exported teacher; run `dvc repro` first")

    task = task_of(args.exports / "teacher")
    texts, pairs = texts_of(load_dataset_dir(PREPARED)["dev"], task.is_pair)
    texts, pairs = texts[: args.n], pairs[: args.n] if pairs else None
    students = sorted(p.name for p in args.exports.iterdir() if p.is_dir() and p.name != "teacher")
    predictors = [load_export(args.exports / "teacher", "torch", name="teacher")]
    predictors += [load_export(args.exports / s, r, name=row_name(s, r), threads=args.threads)
                   for s in students for r in ("torch", "onnx", "int8")]
    for p in predictors:  # warm-up
        p.logits(texts[:32], pairs[:32] if pairs else None, 32)
    results: dict[str, dict[int, list[float]]] = {p.name: {1: [], 32: []} for p in predictors}
    for _ in range(args.repeats):  # interleaved: every model sees the same machine state
        for p in predictors:
            results[p.name][1] += throughput(p, texts[:64], pairs[:64] if pairs else None, 1, 1)
            results[p.name][32] += throughput(p, texts, pairs, 32, 1)
    median = {name: {b: statistics.median(v) for b, v in r.items()} for name, r in results.items()}
    base = median["teacher"]
    print(f"throughput, examples/s (raw text to logits), {args.threads} threads, median of {args.repeats}")
    print(f"{'model':<24} {'b=1':>9} {'x':>7} {'b=32':>9} {'x':>7}")
    for name, m in median.items():
        print(f"{name:<24} {m[1]:>9.1f} {m[1] / base[1]:>7.2f} {m[32]:>9.1f} {m[32] / base[32]:>7.2f}")


if __name__ == "__main__":
    main()
