"""Mean and spread of every model's main dev metric over several seeds, in one table.

Each seed is a DVC experiment of the repository's params with only `seed` changed (`dvc exp run --temp`,
its own temporary workspace: the workspace is left as it is), so everything the seed touches reruns:
the train subsample, augmentation, the teacher and every student. The seeds run one after another here;
for a pool, the distill-sweep flow takes the same params sets ([{"seed": 0}, {"seed": 1}, ...]) and
`dvc exp show` lists the same experiments. Two models are different only where the gap between their
means exceeds both spreads (the `std` column); the second table says so for every pair. Both tables are
printed and written to reports/seeds.md.

    python -m benchmarks.seeds [--seeds 0 1 2] [--repo .] [--prefix seed] [--out reports/seeds.md] [--existing]

`--existing` runs nothing: it summarises experiments PREFIX-SEED that already ran (a sweep on a pool,
or an earlier call), with whatever params they ran with beside their seed.
"""

from __future__ import annotations

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


def differences(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of models on the same metric, the better mean first: the gap between the means, the larger
    of the two spreads (sample std), and whether the gap exceeds it (only then are the two different)."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        model, _, metric = r["column"].partition(" ")
        if metric.startswith("dev_") and r["n"] > 1:
            by_metric.setdefault(metric, []).append({**r, "model": model})
    pairs = []
    for metric, rows in by_metric.items():
        rows = sorted(rows, key=lambda r: -r["mean"])
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                gap, spread = a["mean"] - b["mean"], max(a["std"], b["std"])
                pairs.append({"metric": metric, "better": a["model"], "worse": b["model"], "gap": gap,
                              "spread": spread, "different": gap > spread})
    return pairs


def differences_markdown(pairs: list[dict[str, Any]]) -> str:
    lines = ["Pairs of models: the gap between their means against the larger of their two spreads; only a gap "
             "above it is a difference", "", "| metric | better | worse | gap | larger std | different? |",
             "|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['metric']} | {p['better']} | {p['worse']} | {100 * p['gap']:.2f} | "
                     f"{100 * p['spread']:.2f} | {'yes' if p['different'] else 'no: within the spread'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks import experiments
    from pipeline.orchestration.flows import experiment_row

    parser = experiments.parser(__doc__.splitlines()[0], "reports/seeds.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--prefix", default="seed", help="experiment names: PREFIX-SEED")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    runs = {f"{args.prefix}-{seed}": {"seed": seed} for seed in args.seeds}
    found = experiments.run(repo, runs, args.existing)
    table = summarize([experiment_row(found[name], ["seed"]) for name in runs])
    experiments.write(repo, args.out, f"{markdown(table, args.seeds)}\n\n{differences_markdown(differences(table))}\n")


if __name__ == "__main__":
    main()
