"""The pick against the teacher, measured properly: the select stage's student (selected/, in its runtime)
and the teacher in the same runtime, at batch 1 on dev sentences, model alone, in paired rounds (the two back
to back, which goes first alternating, so that a load that comes and goes moves both alike). Prints the
speed-up's median over rounds with a 95% interval, and the verdict against --goal: met when the whole
interval reaches it, missed when none of it does, else too close to call. The evaluate stage's quick timing,
which the pick was made from, moves by 10-30% between runs on a shared machine; this is the number to quote.

    python -m benchmarks.pick [--goal 3] [--rounds 30] [--samples 64] [--threads 2] [--out reports/pick.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from benchmarks.speed import median_interval, paired_speedups, verdict
from pipeline.artifacts import EXPORTS, PREPARED, SELECTED, load_dataset_dir, texts_of
from pipeline.report.evaluate import REFERENCE, cpu
from pipeline.serving.runtimes import SELECTION_FILE, load_export, task_of


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selected", type=Path, default=SELECTED)
    parser.add_argument("--exports", type=Path, default=EXPORTS)
    parser.add_argument("--goal", type=float, default=3.0, help="the speed-up to reach (default 3)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--samples", type=int, default=64, help="dev sentences timed one at a time per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (e.g. reports/pick.md)")
    args = parser.parse_args(argv)
    path = args.selected / SELECTION_FILE
    if not path.is_file():
        raise SystemExit(f"error: {path}: no pick (run `dvc repro select`)")
    pick = json.loads(path.read_text(encoding="utf-8"))
    torch.set_num_threads(args.threads)
    dev = load_dataset_dir(PREPARED)["dev"]
    texts, pairs = texts_of(dev, task_of(args.selected).is_pair)
    texts, pairs = texts[: args.samples], pairs[: args.samples] if pairs else None
    runtime = pick["runtime"]
    teacher = load_export(args.exports / REFERENCE, runtime, threads=args.threads)
    student = load_export(args.selected, runtime, threads=args.threads)
    values = paired_speedups(teacher, student, texts, pairs, args.rounds)
    low, high, _ = median_interval(values)
    c = cpu()
    lines = [f"The pick of `select` ({pick['rule']}) against the teacher in {runtime}, batch 1, model alone: "
             f"{args.samples} dev sentences a round, {args.rounds} paired rounds, {args.threads} threads of "
             f"{c['name']} ({', '.join(c['flags']) or 'no AVX2'}).", "",
             "| pick | runtime | retention | speed-up, median | 95% interval | range | goal | verdict |",
             "|---|---|---|---|---|---|---|---|",
             f"| {pick['model']} | {runtime} | {100 * pick['retention']:.2f}% | {statistics.median(values):.2f} | "
             f"{low:.2f}-{high:.2f} | {min(values):.2f}-{max(values):.2f} | {args.goal:g}x | "
             f"{verdict(values, args.goal)} |"]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
