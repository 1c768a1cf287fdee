"""The result tables of the README and docs/, generated from the committed reports/ so that every number a
reader meets is one a run wrote. A generated table sits between two markers,

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

and NAME is one of TABLES. `python -m pipeline docs` rewrites every such table in place (run it after
committing a new run's reports); `--check` rewrites nothing and exits 1 naming each table that differs
from what reports/ gives (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path
from pipeline.report.evaluate import REFERENCE, RUNTIME_SEP, markdown_table
from pipeline.report.outputs import machine

ROOT = Path(__file__).resolve().parents[2]  # the repository
FILES = ("README.md", "docs")  # where generated tables may sit (a folder: its *.md)
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)
RUNTIMES = {"torch": "PyTorch", "onnx": "ONNX fp32", "int8": "ONNX int8"}


def metrics(reports: Path) -> dict[str, Any]:
    return json.loads((reports / "metrics.json").read_text(encoding="utf-8"))


def method_of(reports: Path, name: str) -> str | None:
    """The method that trained a student (its stage report), None for the teacher."""
    path = reports / "students" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")).get("method") if path.is_file() else None


def points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def headline(reports: Path) -> str:
    """The teacher, the best Transformer student and the best BiLSTM (by the main dev metric in PyTorch,
    ablations aside), each in PyTorch and its fastest served runtime at batch 1."""
    report = metrics(reports)
    main, rows = report["main_metric"], report["models"]
    students = [name for name, row in rows.items() if RUNTIME_SEP not in name and name != REFERENCE
                and name not in report.get("ablations", {})]
    bilstms = [name for name in students if method_of(reports, name) == "tang"]
    transformers = [name for name in students if name not in bilstms]
    picks = [(REFERENCE, "teacher")]
    for kind, names in (("best Transformer student", transformers), ("best BiLSTM student", bilstms)):
        if names:
            picks.append((max(names, key=lambda name: rows[name][main]), kind))
    lines = [f"| model | what | runtime | {main} | retention | params | MB | ms @ batch 1 | x teacher, same runtime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, kind in picks:
        served = [key for key, row in rows.items() if row["model"] == name]
        fastest = min(served, key=lambda key: rows[key]["latency_ms_b1"])
        for key in dict.fromkeys([name, fastest]):
            row = rows[key]
            lines.append(f"| {name} | {kind} | {RUNTIMES[row['runtime']]} | {points(row[main])} | "
                         f"{points(row['retention'])}% | {row['parameters'] / 1e6:.2f}M | {row['size_mb']} | "
                         f"{row['latency_ms_b1']} | {row['speedup_b1']} |")
    return "\n".join(lines) + "\n"


def timed_on(reports: Path) -> str:
    """One line: where the committed run's timings come from."""
    report = metrics(reports)
    return (f"Task {report['task']}, dev split; timings on {report['threads']} CPU threads{machine(report)}, "
            f"each speed-up against the teacher in the same runtime.\n")


def results(reports: Path) -> str:
    """Every model in every served runtime, as the evaluate stage wrote it."""
    return timed_on(reports) + "\n" + markdown_table(metrics(reports)) + "\n"


def seeds(reports: Path) -> str:
    """Each model's main dev metric over seeds (PyTorch), in points, from reports/seeds.md."""
    text = (reports / "seeds.md").read_text(encoding="utf-8")
    head = re.search(r"^Over seeds (.+?):", text, re.M)
    rows = re.findall(r"^\| (\w+) (dev_\w+) \| (\d+) \| ([\d.-]+) \| ([\d.]+) \| ([\d.-]+) \| ([\d.-]+) \|$", text, re.M)
    lines = [f"Seeds {head.group(1) if head else '?'}; the main dev metric in PyTorch, points.", "",
             "| model | n | mean | std | min | max |", "|---|---|---|---|---|---|"]
    lines += [f"| {model} | {n} | " + " | ".join(f"{100 * float(v):.2f}" for v in values) + " |"
              for model, _, n, *values in rows]
    return "\n".join(lines) + "\n"


def copied(name: str) -> Callable[[Path], str]:
    """The tables of reports/<name> as that benchmark wrote them, PyTorch rows only (the first cell names
    no runtime)."""
    def table(reports: Path) -> str:
        text = (reports / name).read_text(encoding="utf-8")
        return "\n".join(line for line in text.splitlines()
                         if line.startswith("|") and RUNTIME_SEP not in line.split("|")[1]) + "\n"
    return table


def whole(name: str) -> Callable[[Path], str]:
    """reports/<name> as its benchmark wrote it."""
    return lambda reports: (reports / name).read_text(encoding="utf-8")


def pick(reports: Path) -> str:
    """One line: the student the select stage picked (reports/selection.json), and what for."""
    s = json.loads((reports / "selection.json").read_text(encoding="utf-8"))
    row = metrics(reports)["models"][s["row"]]
    at = "at batch 1" if s["latency_at_batch"] == 1 else f"per batch of {s['latency_at_batch']}"
    return (f"The pick of `select` ({s['rule']}): **{s['model']} in {RUNTIMES[s['runtime']]}**, "
            f"{s['main_metric']} {points(s[s['main_metric']])} ({points(s['retention'])}% of the teacher), "
            f"{s['latency_ms']} ms {at}, {row['speedup_b1']}x the teacher in the same runtime at batch 1; served "
            "from `selected/`.\n")


def frontier(reports: Path) -> str:
    """The frontier profile's pick and its table of every student (reports/frontier/selection.md, as the
    select stage wrote it), headings aside."""
    text = (reports / "frontier" / "selection.md").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip() + "\n"


TABLES: dict[str, Callable[[Path], str]] = {
    "headline": headline, "timed-on": timed_on, "results": results, "seeds": seeds,
    "budgets": copied("budgets.md"), "unlabelled": copied("unlabelled.md"), "pick": pick, "frontier": frontier,
    "peers": whole("peers.md"), "engines": whole("engines.md"), "frontier-pick": whole("frontier/pick.md"),
}


def documents(root: Path) -> list[Path]:
    paths: list[Path] = []
    for name in FILES:
        path = root / name
        paths += sorted(path.glob("*.md")) if path.is_dir() else [path] if path.is_file() else []
    return paths


def render(text: str, reports: Path, where: str) -> str:
    """`text` with each generated table rewritten from `reports`; an unknown name is an error naming it."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise SystemExit(f"error: {where}: no generated table named {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name](reports) + match.group(4)
    return BLOCK.sub(fill, text)


def stale(root: Path = ROOT) -> list[str]:
    """'FILE: NAME' for every generated table that differs from what root/reports gives."""
    found = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        for old, new in zip(BLOCK.finditer(text), BLOCK.finditer(render(text, root / "reports", str(path)))):
            if old.group("body") != new.group("body"):
                found.append(f"{path.relative_to(root)}: {old.group('name')}")
    return found


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if a table is not current")
    args = parser.parse_args(argv)
    if args.check:
        found = stale()
        for line in found:
            print(f"{line}: differs from reports/ (python -m pipeline docs rewrites it)", file=sys.stderr)
        raise SystemExit(1 if found else 0)
    for path in documents(ROOT):
        text = path.read_text(encoding="utf-8")
        new = render(text, ROOT / "reports", str(path.relative_to(ROOT)))
        if new != text:
            with atomic_path(path) as tmp:
                tmp.write_text(new, encoding="utf-8")
            print(f"rewrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
