"""Deploy the Prefect flows of pipeline/flows.py to a `process` work pool, from this source folder.

    python -m pipeline.deploy --pool distill [--cron "0 3 * * *"] [--repo .]

Creates (or updates) three deployments: distill-pipeline/distill-pipeline (optionally on a cron
schedule), distill-sweep/distill-sweep and distill-experiment/distill-experiment (what a sweep fans
out to). Workers started with `prefect worker start --pool distill` run them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ENTRYPOINTS = {
    "distill-pipeline": "pipeline/flows.py:distill_pipeline",
    "distill-sweep": "pipeline/flows.py:distill_sweep",
    "distill-experiment": "pipeline/flows.py:distill_experiment",
}


def deploy(repo: str | Path, pool: str, cron: str | None = None) -> list[str]:
    """Deploy every flow from `repo` to `pool`; returns the deployment names (flow/deployment)."""
    from prefect import flow

    repo = Path(repo).resolve()
    names = []
    for name, entrypoint in ENTRYPOINTS.items():
        source = flow.from_source(source=str(repo), entrypoint=entrypoint)
        parameters = {"repo": str(repo)}
        if name == "distill-sweep":
            parameters["experiment_deployment"] = "distill-experiment/distill-experiment"
        source.deploy(name=name, work_pool_name=pool, parameters=parameters,
                      cron=cron if name == "distill-pipeline" else None, print_next_steps=False)
        names.append(f"{name}/{name}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="distill", help="process work pool (create it first)")
    parser.add_argument("--cron", default=None, help="schedule for distill-pipeline, e.g. '0 3 * * *'")
    parser.add_argument("--repo", default=".", help="the repository the flows run in")
    args = parser.parse_args(argv)
    for name in deploy(args.repo, args.pool, args.cron):
        print(f"deployed {name} -> pool {args.pool!r}")


if __name__ == "__main__":
    main()
