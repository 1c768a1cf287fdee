"""Pin the models of a run: every file of every model artifact (teacher, general students, student steps,
students) by its md5, as DVC recorded it in dvc.lock and the cache.

    python tests/pinned_hashes.py check  [--pins FILE]   # in a repo after `dvc repro`
    python tests/pinned_hashes.py update [--pins FILE]   # after an intended change
    python tests/pinned_hashes.py pinned                 # exit 0 if this machine kind has pins, else 1

`.ci/run` checks the ci profile's run against the pins: a change to the code that moves any weight of a
model whose recipe did not change fails CI (a file the pins do not name, of a model added since, is listed,
not failed: other kinds pin it when a session on them updates their file). Bit-exact results hold for one CPU kind and precision, so
each kind has its own file, tests/pinned/ci_profile.<vendor>-<isa>-<precision>.json (the default --pins); on a
kind with no file the check is skipped, saying so. With `--outs data/ models/ exports/` it pins every
artifact of a run (what .ci/run compares a forced rerun with).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

PINNED = Path(__file__).resolve().parent / "pinned"
MODEL_OUTS = ["models/"]


def machine() -> dict[str, str]:
    """This machine's kind: CPU vendor, vector ISA (+AMX) and precision. Each part picks other kernels, and
    other kernels round otherwise: an Intel CPU with AMX trains other bits than an AMD one with AVX-512 and
    bf16, even the fp32 BiLSTMs."""
    import torch

    from pipeline.training.inference import use_bf16

    caps = torch.cpu.get_capabilities()
    vendor = (str(caps.get("cpu_name") or "unknown").split() or ["unknown"])[0]
    isa = torch.backends.cpu.get_cpu_capability() + ("-AMX" if caps.get("amx_bf16") else "")
    return {"cpu": f"{vendor}-{isa}", "precision": "bf16" if use_bf16("auto") else "fp32"}


def pins_for(here: dict[str, str]) -> Path:
    """The pins file of a machine kind."""
    return PINNED / f"ci_profile.{here['cpu']}-{here['precision']}.json"


def model_files(repo: Path, outs: list[str] = MODEL_OUTS) -> dict[str, str]:
    """{path of each file inside each out under `outs`: md5} from dvc.lock and the .dir manifests."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stages = {stage.addressing for stage in dvc_repo.index.stages}
    lock = yaml.safe_load((repo / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    files: dict[str, str] = {}
    for name, entry in lock.items():
        if name not in stages:  # a stage dvc.yaml no longer has
            continue
        for out in entry.get("outs", []):
            if not out["path"].startswith(tuple(outs)):
                continue
            md5 = out["md5"]
            if not md5.endswith(".dir"):
                files[out["path"]] = md5
                continue
            manifest = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
            for item in json.loads(manifest.read_text(encoding="utf-8")):
                files[f"{out['path']}/{item['relpath']}"] = item["md5"]
    return dict(sorted(files.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("check", "update", "pinned"))
    parser.add_argument("--pins", type=Path, help="pins file (default: this machine kind's)")
    parser.add_argument("--repo", type=Path, default=Path("."))
    parser.add_argument("--outs", nargs="+", default=MODEL_OUTS, help="which outs (path prefixes) to pin")
    args = parser.parse_args(argv)
    here = machine()
    args.pins = args.pins or pins_for(here)
    if args.command == "pinned":
        pinned = args.pins.is_file() and json.loads(args.pins.read_text(encoding="utf-8"))["machine"] == here
        print(f"pinned hashes: {args.pins} {'pins' if pinned else 'does not pin'} this machine ({here})")
        return 0 if pinned else 1
    files = model_files(args.repo, args.outs)
    if args.command == "update":
        args.pins.parent.mkdir(parents=True, exist_ok=True)
        args.pins.write_text(json.dumps({"machine": here, "files": files}, indent=1) + "\n", encoding="utf-8")
        print(f"{args.pins}: {len(files)} files pinned on {here}")
        return 0
    if not args.pins.is_file():
        print(f"pinned hashes: skipped, no pins for this machine ({here}): {args.pins} does not exist")
        return 0
    pinned = json.loads(args.pins.read_text(encoding="utf-8"))
    if pinned["machine"] != here:
        print(f"pinned hashes: skipped, pinned on {pinned['machine']}, this machine is {here}")
        return 0
    changed = sorted(k for k in pinned["files"] if pinned["files"][k] != files.get(k))
    if changed:
        print(f"pinned hashes: {len(changed)} files differ from {args.pins} or are gone:", *changed[:40], sep="\n  ")
        return 1
    new = sorted(files.keys() - pinned["files"].keys())  # a model this kind has not pinned yet (a new student)
    print(f"pinned hashes: all {len(pinned['files'])} pinned files as pinned in {args.pins}"
          + (f"; {len(new)} files not pinned (run `update` to pin them): {', '.join(new[:5])}" if new else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
