"""What unlabelled text buys where labels are few: every model's main dev metric with labelled train cut to
`--max-train` rows, without and with `--unlabelled` text (by default the rest of SST-2 train: prepare drops
the rows already in the labelled sample), over several seeds, side by side in one table.

Each (condition, seed) is a DVC experiment (`dvc exp run --temp`, its own temporary workspace) of the
repository's params with only `seed`, `data.max_train` and, for the second condition, `data.unlabelled`
changed, so everything they touch reruns (the teacher too: it learns from the same labelled rows in both).
A gain counts only where it exceeds both conditions' spreads (sample std over the seeds). The table is
printed and written to reports/unlabelled.md.

    python -m benchmarks.unlabelled [--seeds 42 1 2] [--max-train 2000] [--unlabelled PATH] [--existing]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.seeds import summarize

SST2_TRAIN = "data/embedded/glue/SST-2/train.tsv.gz"


def conditions(max_train: int, unlabelled: str) -> dict[str, dict[str, Any]]:
    """The two params sets compared, by experiment-name prefix."""
    return {f"labelled{max_train}": {"data": {"max_train": max_train}},
            f"unlabelled{max_train}": {"data": {"max_train": max_train, "unlabelled": unlabelled}}}


def side_by_side(without: list[dict[str, Any]], with_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model metric: each condition's mean and spread, the gain of unlabelled text, and whether the gain
    exceeds both spreads."""
    a = {r["column"]: r for r in summarize(without)}
    b = {r["column"]: r for r in summarize(with_)}
    rows = []
    for column in [c for c in b if c in a and not c.endswith("retention")]:
        gain, spread = b[column]["mean"] - a[column]["mean"], max(a[column]["std"], b[column]["std"])
        rows.append({"model": column, "without": a[column], "with": b[column], "gain": gain, "spread": spread,
                     "n": min(a[column]["n"], b[column]["n"])})
    return rows


def markdown(rows: list[dict[str, Any]], seeds: list[int], max_train: int, unlabelled: str) -> str:
    lines = [f"{max_train:,} labelled train rows, without and with the unlabelled text of `{unlabelled}`; seeds "
             f"{', '.join(map(str, seeds))}: mean ± sample std of the main dev metric (points)", "",
             "| model metric | n | labelled only | + unlabelled | gain | larger std | a gain? |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        w, u = r["without"], r["with"]
        verdict = ("yes" if r["gain"] > r["spread"] else "no: within the spread") if r["n"] > 1 else "one seed"
        lines.append(f"| {r['model']} | {r['n']} | {100 * w['mean']:.2f} ± {100 * w['std']:.2f} | "
                     f"{100 * u['mean']:.2f} ± {100 * u['std']:.2f} | {100 * r['gain']:+.2f} | "
                     f"{100 * r['spread']:.2f} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks import experiments
    from pipeline.orchestration.flows import experiment_row
    from pipeline.params.config import deep_merge

    parser = experiments.parser(__doc__.splitlines()[0], "reports/unlabelled.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2], help="seeds (default 42 1 2)")
    parser.add_argument("--max-train", type=int, default=2000, help="labelled train rows (default 2000)")
    parser.add_argument("--unlabelled", default=SST2_TRAIN, help=f"unlabelled text (default {SST2_TRAIN})")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    runs = {prefix: {f"{prefix}-{seed}": deep_merge(overrides, {"seed": seed}) for seed in args.seeds}
            for prefix, overrides in conditions(args.max_train, args.unlabelled).items()}
    found = experiments.run(repo, {name: o for named in runs.values() for name, o in named.items()}, args.existing)
    without, with_ = ([experiment_row(found[name], ["seed"]) for name in named] for named in runs.values())
    text = markdown(side_by_side(without, with_), args.seeds, args.max_train, args.unlabelled) + "\n"
    experiments.write(repo, args.out, text)


if __name__ == "__main__":
    main()
