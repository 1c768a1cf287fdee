"""What the benchmarks that compare params sets share: each set is a DVC experiment (`dvc exp run --temp`,
its own temporary workspace: the workspace is left as it is) named after it; `--existing` runs nothing and
reads experiments that ran (a sweep on a pool, or an earlier call); the table is printed and written into
the repository."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def parser(description: str, out: str) -> argparse.ArgumentParser:
    """An argument parser with the shared options: --repo, --out (default `out`) and --existing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repo", default=".", help="the repository (default: here)")
    parser.add_argument("--out", type=Path, default=Path(out),
                        help=f"also write the table(s) here, relative to the repository (default {out})")
    parser.add_argument("--existing", action="store_true",
                        help="run nothing: summarise the experiments of these names that already ran")
    return parser


def run(repo: Path, runs: dict[str, dict[str, Any]], existing: bool = False) -> dict[str, dict[str, Any]]:
    """Run each named params overrides as an experiment (unless `existing`), one after another; return
    every named experiment's `dvc exp show` entry (pipeline.orchestration.flows.experiments). Exits naming any missing."""
    from pipeline.orchestration.flows import experiment_args, experiments
    from pipeline.orchestration.workspace import run_dvc

    for name, overrides in runs.items() if not existing else ():
        print(name, flush=True)
        run_dvc(repo, *experiment_args(repo, name, overrides))
    found = experiments(repo, list(runs))
    missing = sorted(set(runs) - set(found))
    if missing:
        raise SystemExit(f"error: no experiment named {', '.join(missing)} in {repo} (`dvc exp list --all-commits`)")
    return found


def write(repo: Path, out: Path, text: str) -> None:
    """Print the table(s) and write them to repo/out."""
    from pipeline.artifacts import atomic_path

    print(text, end="")
    with atomic_path(repo / out) as tmp:
        tmp.write_text(text, encoding="utf-8")
