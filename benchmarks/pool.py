"""Wall time of one pipeline run fanned out over a work pool of 1 worker against N workers, on the same DAG.

Starts a Prefect server on 127.0.0.1 and the process pool, deploys prefect.yaml from a clone of this
repository's HEAD (commit what you want measured) set to a profile, then for each worker count runs the
whole DAG from scratch (a fresh copy, an empty DVC remote) as one `distill-pipeline` run with
`stage_deployment`, workers taking one stage at a time. Workers sharing one machine split its cores
(OMP_NUM_THREADS = cores // workers); on separate machines each has its own. Prints one table:

    python -m benchmarks.pool [--profile ci] [--workers 1 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="benchmark", GIT_AUTHOR_EMAIL="benchmark@localhost",
               GIT_COMMITTER_NAME="benchmark", GIT_COMMITTER_EMAIL="benchmark@localhost")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def source_repo(where: Path, profile: str | None) -> Path:
    """A clone of HEAD with the profile's params committed (the workers check out commits)."""
    from pipeline.params.profile import profile_params, write_params

    repo = where / "source"
    git(where, "clone", "-q", str(ROOT), str(repo))
    if profile:
        write_params(profile_params(profile, ROOT / "profiles"), str(repo / "params.yaml"))
        git(repo, "commit", "-qam", f"profile {profile}", "--allow-empty")
    return repo


def timed_run(source: Path, where: Path, env: dict[str, str], workers: int) -> tuple[float, dict[str, str]]:
    from pipeline.orchestration.flows import distill_pipeline
    from pipeline.orchestration.prefect_local import start_worker, stop

    repo = where / f"run{workers}" / "repo"
    git(where, "clone", "-q", str(source), str(repo))
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    procs = [start_worker(dict(env, OMP_NUM_THREADS=threads), workdir=where / f"run{workers}" / f"worker{i}",
                          limit=1) for i in range(workers)]
    try:
        start = time.perf_counter()
        ran = distill_pipeline(repo=str(repo), stage_deployment="distill-stage/distill-stage",
                               remote=str(where / f"run{workers}" / "remote"))
        return time.perf_counter() - start, ran
    finally:
        for proc in procs:
            stop(proc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ci", help="profile to run (default ci); '' for HEAD's params.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3], help="worker counts (default 1 3)")
    args = parser.parse_args(argv)

    from pipeline.orchestration.prefect_local import deploy, local_server

    with tempfile.TemporaryDirectory(prefix="pool-benchmark-") as tmp:
        where = Path(tmp)
        source = source_repo(where, args.profile)
        with local_server(where / "prefect") as env:
            os.environ.update(PREFECT_API_URL=env["PREFECT_API_URL"], PREFECT_HOME=env["PREFECT_HOME"])
            deploy(env, source)
            rows = []
            for n in args.workers:
                seconds, ran = timed_run(source, where, env, n)
                rows.append((n, seconds, sum(r == "ran" for r in ran.values())))
                print(f"{n} worker(s): {seconds:.0f} s", flush=True)
    base = rows[0][1]
    print(f"\nOne `distill-pipeline` run, profile {args.profile or 'HEAD params.yaml'}, {os.cpu_count()} cores here\n")
    print("| workers | stages run | wall time (s) | speed-up over " + f"{rows[0][0]} worker(s) |")
    print("|---|---|---|---|")
    for n, seconds, stages in rows:
        print(f"| {n} | {stages} | {seconds:.0f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
