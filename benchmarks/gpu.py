"""A whole profile on the GPU that is here (the `full` profile by default): each stage's wall time and
memory peaks (the process's resident memory, the GPU's allocation), then each model's main dev metric,
as tables.

Runs in a clone of this repository's HEAD set to the profile (commit what you want measured), with a
fresh DVC cache, `dvc repro` from scratch; the stages' own log lines (`stage NAME finished in N s, peak
memory M MB, GPU G MB`) give the first table, reports/metrics.json the second. Without a CUDA GPU it
stops, unless --cpu says to run anyway (then the GPU column is empty).

    python -m benchmarks.gpu [--profile full] [--cpu] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"stage (?P<name>\w+)(?: (?P<args>[^\n]*?))? finished in (?P<seconds>[\d.]+) s, "
                        r"peak memory (?P<rss>[\d,]+) MB(?:, GPU (?P<gpu>[\d,]+) MB)?")


def stage_rows(log: str) -> list[dict[str, Any]]:
    """One row per stage log line: the stage (with its item), seconds, peak resident and GPU memory (MB)."""
    rows = []
    for m in STAGE_LINE.finditer(log):
        args = (m.group("args") or "").split()
        rows.append({"stage": "@".join([m.group("name"), " ".join(args)]) if args else m.group("name"),
                     "seconds": float(m.group("seconds")), "rss_mb": int(m.group("rss").replace(",", "")),
                     "gpu_mb": int(m.group("gpu").replace(",", "")) if m.group("gpu") else None})
    return rows


def table(rows: list[dict[str, Any]], metrics: dict[str, Any], device: str) -> str:
    main = metrics["main_metric"]
    total = sum(r["seconds"] for r in rows)
    lines = [f"Device: {device}", "", "| stage | seconds | peak memory (MB) | peak GPU memory (MB) |", "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['seconds']:.1f} | {r['rss_mb']:,} | "
              + (f"{r['gpu_mb']:,}" if r["gpu_mb"] is not None else "-") + " |" for r in rows]
    lines += [f"| all stages | {total:.1f} | {max((r['rss_mb'] for r in rows), default=0):,} | "
              + (f"{max(r['gpu_mb'] for r in rows if r['gpu_mb'] is not None):,}"
                 if any(r["gpu_mb"] is not None for r in rows) else "-") + " |", "",
              f"| model | runtime | {main} |", "|---|---|---|"]
    lines += [f"| {row['model']} | {row['runtime']} | {100 * row[main]:.2f} |" for row in metrics["models"].values()]
    return "\n".join(lines) + "\n"


def device_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main(argv: list[str] | None = None) -> None:
    from benchmarks.pool import source_repo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", help="the profile to run (default full)")
    parser.add_argument("--cpu", action="store_true", help="run even without a CUDA GPU")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    gpu = device_name()
    if gpu is None and not args.cpu:
        raise SystemExit("error: no CUDA GPU is visible (torch.cuda.is_available() is False); --cpu runs anyway")
    where = args.keep or Path(tempfile.mkdtemp(prefix="distill-gpu-"))
    where.mkdir(parents=True, exist_ok=True)
    repo = source_repo(where, args.profile)
    env = dict(os.environ, DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = run.stdout + run.stderr
    (where / "repro.log").write_text(log, encoding="utf-8")
    if run.returncode != 0:
        raise SystemExit(f"error: dvc repro failed after {wall:.0f} s; the log is {where / 'repro.log'}:\n{log[-3000:]}")
    metrics = json.loads((repo / "reports/metrics.json").read_text(encoding="utf-8"))
    print(table(stage_rows(log), metrics, gpu or "CPU (no CUDA GPU)"), end="")
    print(f"\n`dvc repro` of the {args.profile} profile: {wall / 60:.1f} min wall time")


if __name__ == "__main__":
    main()
