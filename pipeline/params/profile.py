"""Write params.yaml from a profile: `python -m pipeline profile {default,ci,full,...}`.

A profile is the typed defaults (pipeline/params/config.py and the method files) with profiles/<name>.yaml
merged on top; `default` is the defaults alone. A student a profile adds may start `like: <student>`
(`resolve_like`). The result is validated, then written to params.yaml, which DVC tracks: `dvc repro`
afterwards reruns exactly the stages whose params changed.

The file is rendered for reading: each field's comment once (its first occurrence), and a student that
differs from an earlier one of its method in a few keys written as that one plus those keys (a YAML
merge key, `<<: *base`), so an ablation reads as its base and what it changes. YAML resolves the merge
for every reader (DVC included), so a change to the base reaches its variants.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from pipeline.artifacts import atomic_path
from pipeline.errors import ConfigError, PipelineError
from pipeline.methods import methods
from pipeline.params.config import PARAMS_FILE, Params, StudentShape, deep_merge, parse_params, read_yaml

PROFILES_DIR = Path("profiles")
HEADER = """\
# Every knob of the pipeline, validated (pipeline/params/config.py) before any stage runs; DVC reruns exactly
# the stages whose keys change. Written by `python -m pipeline profile <name>`: the defaults (in
# pipeline/params/config.py and pipeline/methods/) with profiles/<name>.yaml on top. Edit it freely, but
# switching profile rewrites it: keep changes you want to keep in a profile of your own.
# `<<: *name` writes a student as student `name` plus the keys that follow (a YAML merge key)."""


def available() -> list[str]:
    return ["default"] + sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_params(name: str, profiles_dir: Path = PROFILES_DIR) -> Params:
    if name == "default":
        return Params()
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        raise PipelineError(f"unknown profile {name!r}; available: {', '.join(available())}")
    overlay = read_yaml(path) or {}
    raw = resolve_like(deep_merge(Params().model_dump(), overlay), str(path))
    return parse_params(resolve_sweep(raw, str(path)), str(path))


def resolve_like(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A profile's student written `{like: other, key: value, ...}` is student `other` of the same method,
    as this profile leaves it (the defaults with the profile's changes), plus those keys: an ablation
    named in a profile reads as its base and what it changes, whatever the base's settings are there."""
    for method in methods():
        students = raw.get(method)
        if not isinstance(students, dict):
            continue
        for name, entry in list(students.items()):
            if not isinstance(entry, dict) or "like" not in entry:
                continue
            rest = {k: v for k, v in entry.items() if k != "like"}
            base = students.get(entry["like"])
            if not isinstance(base, dict) or "like" in base:
                raise ConfigError(f"{source}: {method}.{name}.like: {entry['like']!r} is not a student of "
                                  f"{method} written before it (have: {', '.join(n for n in students if n != name)})")
            students[name] = deep_merge(base, rest)
    return raw


SWEEP_AXES = {"shape": "Transformer shapes, LAYERSxHIDDENxHEADSxINTERMEDIATE (a two-step student's `shape`)",
              "hidden": "BiLSTM units per direction (a tang student's `hidden`)"}


def resolve_sweep(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A profile's `sweep:` section, as students: each entry `NAME: {like: student, AXIS: [values], key:
    value...}` adds one student per value, named NAME_VALUE, that is the `like` student (of any method, as
    this profile leaves it) with that value of AXIS (shape or hidden, SWEEP_AXES) and the other keys set.
    A shape value LxHxAxI sets the student's whole `shape`."""
    sweeps = raw.pop("sweep", None) or {}
    if not isinstance(sweeps, dict):
        raise ConfigError(f"{source}: sweep: expected a mapping of sweep name -> {{like: student, AXIS: [values]}}")
    for name, entry in sweeps.items():
        key = f"{source}: sweep.{name}"
        if not isinstance(entry, dict) or "like" not in entry:
            raise ConfigError(f"{key}: expected {{like: student, AXIS: [values]}} with AXIS one of "
                              f"{', '.join(SWEEP_AXES)}")
        method = next((m for m in methods() if entry["like"] in (raw.get(m) or {})), None)
        if method is None:
            raise ConfigError(f"{key}.like: {entry['like']!r} is not a student of this profile")
        axes = [a for a in SWEEP_AXES if a in entry]
        if len(axes) != 1 or not isinstance(entry[axes[0]], list) or not entry[axes[0]]:
            axes_help = "; ".join(f"{a}: {h}" for a, h in SWEEP_AXES.items())
            raise ConfigError(f"{key}: give one axis, a list of values: {axes_help}")
        axis, rest = axes[0], {k: v for k, v in entry.items() if k not in ("like", axes[0])}
        for value in entry[axis]:
            if axis == "shape":
                try:
                    shape = StudentShape.parse(value)
                except ValueError as exc:
                    raise ConfigError(f"{key}.shape: {exc}") from None
                point, label = {"shape": shape.model_dump()}, shape.label()
            else:
                point, label = {axis: value}, str(value)
            student = f"{name}_{label}"
            if student in raw[method]:
                raise ConfigError(f"{key}: student {student!r} is in {method} already")
            raw[method][student] = deep_merge(deep_merge(raw[method][entry["like"]], rest), point)
    return raw


# ---------------------------------------------------------------- rendering
def render_params(params: Params) -> str:
    """params.yaml text (stable key order); yaml.safe_load of it validates back to `params`."""
    lines = HEADER.splitlines()
    _render_model(params, lines, 0, set())
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def _comment(name: str, description: str | None, seen: set[tuple[str, str]]) -> str:
    if not description or (name, description) in seen:
        return ""
    seen.add((name, description))
    return f"  # {description}"


def _render_model(model: BaseModel, lines: list[str], indent: int, seen: set, only: set[str] | None = None) -> None:
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        if only is not None and name not in only:
            continue
        value = getattr(model, name)
        comment = _comment(name, field.description, seen)
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{comment}")
            _render_model(value, lines, indent + 2, seen)
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            lines.append(f"{pad}{name}:{comment}")
            _render_students(value, lines, indent + 2, seen)
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}{comment}")


def _differing(a: BaseModel, b: BaseModel) -> set[str]:
    return {k for k in type(a).model_fields if getattr(a, k) != getattr(b, k)}


def _render_students(students: dict[str, BaseModel], lines: list[str], indent: int, seen: set) -> None:
    """A method's students; one that differs from an earlier full one in under half its keys is written
    as `<<: *that` plus the keys that differ."""
    pad = " " * indent
    bases: list[str] = []
    plan: dict[str, tuple[str, set[str]] | None] = {}
    for name, cfg in students.items():
        options = [(len(d), base, d) for base in bases
                   if type(students[base]) is type(cfg) and 2 * len(d := _differing(students[base], cfg))
                   < len(type(cfg).model_fields)]
        if options:
            _, base, diff = min(options, key=lambda o: o[0])
            plan[name] = (base, diff)
        else:
            plan[name] = None
            bases.append(name)
    used = {p[0] for p in plan.values() if p}
    for name, cfg in students.items():
        if plan[name] is None:
            lines.append(f"{pad}{name}:" + (f" &{name}" if name in used else ""))
            _render_model(cfg, lines, indent + 2, seen)
        else:
            base, diff = plan[name]
            lines.append(f"{pad}{name}:")
            lines.append(f"{pad}  <<: *{base}")
            _render_model(cfg, lines, indent + 2, seen, only=diff)


def write_params(params: Params, path: str | Path = PARAMS_FILE) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(render_params(params), encoding="utf-8")


def edit_params(text: str, overrides: dict[str, Any], source: str = "params overrides") -> tuple[Params, str]:
    """params.yaml text with `overrides` (a nested mapping) set at their keys, as an edit of the file
    would set them (and `dvc exp run -S` does): comments and merge keys stay, so a change to a base student
    reaches its variants. Returns the validated params and the new text; raises ConfigError, naming the
    key, for a bad value."""
    import io

    from ruamel.yaml import YAML

    rt = YAML()
    rt.width = 1000
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    data = rt.load(text) or {}

    def put(node, tree: dict[str, Any]) -> None:
        for key, value in tree.items():
            if isinstance(value, dict) and value and isinstance(node.get(key), dict):
                put(node[key], value)
            else:
                node[key] = value

    put(data, overrides)
    out = io.StringIO()
    rt.dump(data, out)
    params = parse_params(yaml.safe_load(out.getvalue()), source)
    _fill(data, params)  # DVC reads every key a stage depends on from the file itself
    out = io.StringIO()
    rt.dump(data, out)
    return params, out.getvalue()


def _fill(node, model: BaseModel) -> None:
    """Write into a loaded params.yaml the keys it lacks, with their values in `model` (the defaults)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name not in node:
            node[name] = _plain(value)
        elif isinstance(value, BaseModel) and isinstance(node[name], dict):
            _fill(node[name], value)
        elif isinstance(value, dict) and isinstance(node[name], dict):
            for key, sub in value.items():
                if isinstance(sub, BaseModel) and isinstance(node[name].get(key), dict):
                    _fill(node[name][key], sub)


def _plain(value: Any) -> Any:
    return value.model_dump() if isinstance(value, BaseModel) else \
        {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help=f"profile name ({', '.join(available())})")
    parser.add_argument("--output", default=PARAMS_FILE, help="file to write (default: params.yaml)")
    parser.add_argument("--fill", action="store_true",
                        help="instead: write into params.yaml the keys it lacks (a student added with only the keys "
                             "it changes), from the defaults, keeping its values, comments and merge keys")
    args = parser.parse_args(argv)
    if args.fill == bool(args.name):
        parser.error("give a profile name, or --fill")
    try:
        if args.fill:
            path = Path(args.output)
            if not path.is_file():
                raise PipelineError(f"{path}: params file not found")
            _, text = edit_params(path.read_text(encoding="utf-8"), {}, str(path))
            with atomic_path(path) as tmp:
                tmp.write_text(text, encoding="utf-8")
            print(f"{path}: every key filled in")
            return
        params = profile_params(args.name)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    write_params(params, args.output)
    print(f"{args.output}: profile {args.name!r} written; run `dvc repro` to bring the outputs up to date")


if __name__ == "__main__":
    main()
