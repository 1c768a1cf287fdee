"""Mean and spread of every model's main dev metric over several seeds, in one table.

Each seed is a DVC experiment of the repository's params with only `seed` changed (`dvc exp run --temp`,
its own temporary workspace: the workspace is left as it is), so everything the seed touches reruns:
the train subsample, augmentation, the teacher and every student. The seeds run one after another here;
for a pool, the distill-sweep flow takes the same params sets ([{"seed": 0}, {"seed": 1}, ...]) and
`dvc exp show` lists the same experiments. Call two models different only where the gap between their
means exceeds both spreads (the `std` column).

    python -m benchmarks.seeds [--seeds 0 1 2] [--repo .] [--prefix seed]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and metric column of the experiment rows: n, mean, sample std, min and max; best mean first."""
    columns = sorted({k for row in rows for k, v in row.items() if isinstance(v, (int, float)) and k != "seed"})
    table = []
    for column in columns:
        values = [row[column] for row in rows if isinstance(row.get(column), (int, float))]
        table.append({"column": column, "n": len(values), "mean": statistics.fmean(values),
                      "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                      "min": min(values), "max": max(values)})
    return sorted(table, key=lambda r: (r["column"].endswith("retention"), -r["mean"]))


def markdown(table: list[dict[str, Any]], seeds: list[int]) -> str:
    lines = [f"Over seeds {', '.join(map(str, seeds))}: mean, sample std, min, max", "",
             "| model metric | n | mean | std | min | max |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['column']} | {r['n']} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | {r['max']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from pipeline.flows import experiment_args, experiment_rows, run_dvc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--prefix", default="seed", help="experiment names: PREFIX-SEED")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    names = [f"{args.prefix}-{seed}" for seed in args.seeds]
    for name, seed in zip(names, args.seeds):
        print(f"{name}: dvc exp run --temp -S seed={seed}", flush=True)
        run_dvc(repo, *experiment_args(repo, name, {"seed": seed}))
    rows = experiment_rows(repo, names, ["seed"])
    print(markdown(summarize(rows), args.seeds))


if __name__ == "__main__":
    main()
