"""Pick the student a user's target names, from what the evaluate stage measured (stage `select`).

The rule is params' `select` section: the fastest student (and runtime) that keeps `min_retention` of the
teacher's main dev metric (latencies within `latency_tolerance` of the fastest count as equal, the most
accurate of them first), or the most accurate one under `max_latency_ms`, or both; latency at batch 1 or
per batch of evaluate.batch_size, on the machine that ran evaluate. One seed measures each student, so
the pick says where the seed spread (evaluate.seed_spread) could change it: a pick that clears the floor by
less than the spread, a faster student that misses it by less, a runner-up within the spread of the pick.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pipeline.artifacts import atomic_path, write_json
from pipeline.errors import ConfigError
from pipeline.report.evaluate import REFERENCE, latency, row_name
from pipeline.report.plots import pareto_front
from pipeline.serving.runtimes import SELECTION_FILE


def rule_text(cfg) -> str:
    """The select rule in words."""
    where = f" in {cfg.runtime}" if cfg.runtime else ""
    at = "at batch 1" if cfg.batch == 1 else "per batch"
    keeps = None if cfg.min_retention is None else f"keeps {100 * cfg.min_retention:g}% of the teacher"
    under = None if cfg.max_latency_ms is None else f"runs under {cfg.max_latency_ms:g} ms {at}"
    if keeps and not under:
        return f"the fastest student{where} (latency {at}) that {keeps}"
    if keeps:
        return f"the most accurate student{where} that {keeps} and {under}"
    if under:
        return f"the most accurate student{where} that {under}"
    return f"the most accurate student{where}"


def select(report: dict[str, Any], cfg, seed_spread: float) -> dict[str, Any]:
    """The student row `cfg` picks from an evaluate report, with the rule, the candidates it was chosen from
    (ranked), and notes on what the seed spread could change. ConfigError, naming the keys to change, when
    no student meets the rule."""
    main = report["main_metric"]
    rows = report["models"]
    teacher = rows[REFERENCE][main]
    runtimes = [cfg.runtime] if cfg.runtime else sorted({r["runtime"] for r in rows.values()})
    students = {name: r for name, r in rows.items() if r["model"] != REFERENCE and r["runtime"] in runtimes}
    if not students:
        raise ConfigError(f"select.runtime: no student was measured in {cfg.runtime} (evaluate.runtimes: "
                          f"{', '.join(sorted({r['runtime'] for r in rows.values()}))})")
    if cfg.min_retention is not None and teacher <= 0:
        raise ConfigError(f"select.min_retention: the teacher's {main} is {teacher:g}, so a share of it means nothing; "
                          "set select.min_retention: null (and select.max_latency_ms)")
    floor = None if cfg.min_retention is None else cfg.min_retention * teacher
    speed = {name: latency(report, r, cfg.batch) for name, r in students.items()}

    def meets(name: str) -> bool:
        return ((floor is None or students[name][main] >= floor)
                and (cfg.max_latency_ms is None or speed[name] <= cfg.max_latency_ms))

    fastest_first = cfg.min_retention is not None and cfg.max_latency_ms is None
    ranked = sorted((n for n in students if meets(n)),
                    key=(lambda n: (speed[n], -students[n][main])) if fastest_first
                    else (lambda n: (-students[n][main], speed[n])))
    if not ranked:
        raise ConfigError(no_pick(students, speed, main, teacher, cfg))
    if fastest_first:  # as fast as the fastest within the timing's noise: the most accurate of those first
        tied = [n for n in ranked if speed[n] <= (1 + cfg.latency_tolerance) * speed[ranked[0]]]
        ranked = sorted(tied, key=lambda n: (-students[n][main], speed[n])) + [n for n in ranked if n not in tied]
    pick = ranked[0]
    spread = seed_spread / 100
    notes = []
    value = students[pick][main]
    if floor is not None and value - floor < spread:
        notes.append(f"{pick} clears the floor by {100 * (value - floor):.2f} points, less than the seed spread "
                     f"({seed_spread:g}): another seed may fall below it")
    if floor is not None:
        noted = set()  # a student once, at its fastest runtime
        for name in sorted(students, key=lambda n: speed[n]):
            row = students[name]
            if (name not in ranked and row["model"] not in noted and speed[name] < speed[pick]
                    and 0 < floor - row[main] < spread
                    and (cfg.max_latency_ms is None or speed[name] <= cfg.max_latency_ms)):
                noted.add(row["model"])
                notes.append(f"{name} is faster ({speed[name]:g} ms) and misses the floor by "
                             f"{100 * (floor - row[main]):.2f} points, less than the seed spread: another seed may "
                             "pass it")
    runner_up = ranked[1] if len(ranked) > 1 else None
    apart = None if runner_up is None else round(100 * (value - students[runner_up][main]), 2)
    if runner_up is not None and abs(apart) < seed_spread:
        notes.append(f"the runner-up, {runner_up} ({speed[runner_up]:g} ms), is {abs(apart):.2f} points "
                     f"{'below' if apart >= 0 else 'above'} the pick, within the seed spread: on quality the two are "
                     "a tie")
    row = students[pick]
    same = rows.get(row_name(REFERENCE, row["runtime"]))  # the teacher in the pick's runtime
    return {"model": row["model"], "runtime": row["runtime"], "row": pick, "rule": rule_text(cfg),
            "select": cfg.model_dump(), "main_metric": main, main: value, "retention": row["retention"],
            "latency_ms": speed[pick], "latency_at_batch": cfg.batch,
            "speedup_b1": row["speedup_b1"], "speedup_throughput": row["speedup_throughput"],
            "teacher": {main: teacher, "latency_ms": latency(report, same, cfg.batch) if same else None},
            "runner_up": runner_up, "points_apart": apart, "seed_spread": seed_spread, "notes": notes,
            "candidates": [{"row": n, main: students[n][main], "retention": students[n]["retention"],
                            "latency_ms": speed[n]} for n in ranked],
            "cpu": report.get("cpu")}


def no_pick(students: dict[str, dict[str, Any]], speed: dict[str, float], main: str, teacher: float, cfg) -> str:
    """Why no student meets the rule, with the closest ones, naming the keys to change."""
    lines = [f"no student meets select: {rule_text(cfg)}."]
    if cfg.min_retention is not None:
        best = max(students, key=lambda n: students[n][main])
        lines.append(f"The most accurate, {best}, keeps {100 * students[best][main] / teacher:.2f}% of the teacher "
                     f"({speed[best]:g} ms).")
    if cfg.max_latency_ms is not None:
        quick = min(students, key=lambda n: speed[n])
        lines.append(f"The fastest, {quick}, takes {speed[quick]:g} ms.")
    lines.append("Lower select.min_retention or raise select.max_latency_ms, or train other students (a larger "
                 "budget, other shapes).")
    return " ".join(lines)


SERVED_KEYS = ("model", "runtime", "row", "rule", "select", "main_metric", "retention")  # no timings: see below


def write_selected(selection: dict[str, Any], exports: Path, out: Path) -> None:
    """`out`: a copy of the picked student's export folder with selection.json (which runtime it serves, by
    which rule, and its quality), written whole or not at all. Like the exports it holds no timing, so that
    the same pick gives the same folder; the timings are in reports/selection.json."""
    source = exports / selection["model"]
    with atomic_path(out) as tmp:
        shutil.copytree(source, tmp)
        write_json(tmp / SELECTION_FILE, {k: selection[k] for k in (*SERVED_KEYS, selection["main_metric"])})


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.2f}%"


def where(report: dict[str, Any]) -> str:
    cpu = report.get("cpu")
    return f" on {cpu['name']} ({', '.join(cpu['flags']) or 'no AVX2'}, {cpu['cores']} cores)" if cpu else ""


def selection_markdown(report: dict[str, Any], selection: dict[str, Any]) -> str:
    """reports/selection.md: the rule, the pick and its notes, then every student by runtime and latency,
    marked where it is on its runtime's Pareto front (latency against the main metric) and where it meets
    the rule."""
    main, b, rows = report["main_metric"], report["batch_size"], report["models"]
    batch = selection["latency_at_batch"]
    pick = rows[selection["row"]]
    met = {c["row"] for c in selection["candidates"]}
    lines = ["# The pick", "",
             f"Rule (params `select`): {selection['rule']}. Latency as the evaluate stage timed it{where(report)}, "
             f"{report['threads']} threads.", "",
             f"**{selection['row']}**: {main} {100 * pick[main]:.2f}, {percent(pick['retention'])} of the teacher, "
             f"{selection['latency_ms']:g} ms {'at batch 1' if batch == 1 else f'per batch of {batch}'}; "
             f"{pick['speedup_b1']}x the teacher's speed in {pick['runtime']} at batch 1, "
             f"{pick['speedup_throughput']}x at batch {b}. It is in `selected/` "
             "(`python -m pipeline predict selected TEXT` serves it in its runtime).", ""]
    lines += [f"- {note}" for note in selection["notes"]] + ([""] if selection["notes"] else [])
    lines += ["## The frontier", "",
              "Every student in every runtime, fastest first; *front*: no student of its runtime is both faster "
              "(at batch 1) and more accurate; *meets*: it meets the rule.", "",
              f"| runtime | student | {main} | retention | ms @b1 | ms per batch of {b} | x teacher @b1 | front | meets |",
              "|---|---|---|---|---|---|---|---|---|"]
    for runtime in sorted({r["runtime"] for r in rows.values()}):
        names = [n for n, r in rows.items() if r["runtime"] == runtime and r["model"] != REFERENCE]
        front = set(pareto_front([(n, rows[n]["latency_ms_b1"], rows[n][main]) for n in names]))
        for n in sorted(names, key=lambda n: rows[n]["latency_ms_b1"]):
            r = rows[n]
            name = f"**{r['model']}**" if n == selection["row"] else r["model"]
            retention = percent(r["retention"])
            lines.append(f"| {runtime} | {name} | {100 * r[main]:.2f} | {retention} | {r['latency_ms_b1']:g} | "
                         f"{latency(report, r, b):g} | {r['speedup_b1']} | {'yes' if n in front else ''} | "
                         f"{'yes' if n in met else ''} |")
    return "\n".join(lines) + "\n"
