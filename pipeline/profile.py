"""Switch params.yaml to a profile: `python -m pipeline.profile {default,ci,full}`.

A profile is the typed defaults (pipeline/config.py) with profiles/<name>.yaml merged on top;
`default` is the defaults alone. The result is validated, then written to params.yaml, which DVC
tracks: `dvc repro` afterwards reruns exactly the stages whose params changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.config import PARAMS_FILE, Params, deep_merge, parse_params, render_params
from pipeline.data import atomic_path
from pipeline.errors import PipelineError

PROFILES_DIR = Path("profiles")


def available() -> list[str]:
    return ["default"] + sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_params(name: str, profiles_dir: Path = PROFILES_DIR) -> Params:
    base = Params().model_dump()
    if name == "default":
        return Params()
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; available: {', '.join(available())}")
    overlay = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return parse_params(deep_merge(base, overlay), str(path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help=f"profile name ({', '.join(available())})")
    parser.add_argument("--output", default=PARAMS_FILE, help="file to write (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        params = profile_params(args.name)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    with atomic_path(args.output) as tmp:
        tmp.write_text(render_params(params), encoding="utf-8")
    print(f"{args.output}: profile {args.name!r} written; run `dvc repro` to bring the outputs up to date")


if __name__ == "__main__":
    main()
