"""Budgets that fit the task, before and after: small tasks run twice with the default profile, once with
`epochs` alone and the teacher's last step (every `min_steps` 0, `teacher.keep_best` false: how the pipeline
trained before the floors) and once as the defaults are (the floors, the teacher's best dev evaluation).
One table: per task and condition, the teacher's optimizer steps and main dev metric, the baseline (what
train's labels alone predict), and each model's gain over the baseline in points (its share of the
teacher's gain in brackets).

Each (task, condition) is a DVC experiment (`dvc exp run --temp`, its own temporary workspace) of the
repository's params with only the task's data keys and the condition's keys changed; DVC's run cache
restores what both conditions share. The table is printed and written to reports/budgets.md.

    python -m benchmarks.budgets [--tasks mrpc stsb sst2-2000] [--seed 42] [--existing]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GLUE = "../shared/data/glue"
TASKS = {  # name -> the data keys that make the task
    "mrpc": {"data": {"task": "mrpc", "source": f"{GLUE}/MRPC"}},
    "stsb": {"data": {"task": "stsb", "source": f"{GLUE}/STS-B"}},
    "sst2-2000": {"data": {"max_train": 2000}},
}
CONDITIONS = ("epochs", "floors")  # before: epochs alone; after: the defaults


def epochs_alone(params: dict[str, Any]) -> dict[str, Any]:
    """Overrides (dotted keys) that turn every step floor off and the teacher's best checkpoint with it."""
    from pipeline.params.config import flatten

    off = {key: 0 for key, value in flatten(params).items() if key.endswith(".min_steps") and value}
    return {**off, "teacher.keep_best": False}


def result(rev: dict[str, Any]) -> dict[str, Any]:
    """What the table shows of one experiment (`pipeline.orchestration.flows.experiments` entry)."""
    files = rev.get("data", {}).get("metrics", {})
    teacher = files.get("reports/teacher.json", {}).get("data", {})
    metrics = files.get("reports/metrics.json", {}).get("data", {})
    main, base = metrics.get("main_metric"), metrics.get("baseline") or {}
    models = {name: values for name, values in metrics.get("models", {}).items() if ":" not in name}
    return {"steps": teacher.get("steps"), "steps_why": teacher.get("steps_why", ""), "kept_step": teacher.get("kept_step"),
            "main": main, "baseline": base.get(main), "predicts": base.get("predicts"),
            "models": {name: (values.get(main), values.get("gain_share")) for name, values in models.items()}}


def markdown(results: dict[tuple[str, str], dict[str, Any]], seed: int) -> str:
    models = sorted({m for r in results.values() for m in r["models"]}, key=lambda m: (m != "teacher", m))
    lines = [f"The default profile on small tasks, seed {seed}: `epochs` alone and the teacher's last step (every "
             "min_steps 0, teacher.keep_best false) against the defaults (the step floors, the teacher's best dev "
             "evaluation). Main dev metric (points), the baseline, and each model's gain over the baseline in points "
             "(its share of the teacher's gain).", "",
             "| task | budgets | teacher steps | metric | baseline | " + " | ".join(models) + " |",
             "|---" * (5 + len(models)) + "|"]
    for (task, condition), r in results.items():
        base = r["baseline"]
        cells = []
        for model in models:
            value, share = r["models"].get(model, (None, None))
            if value is None or base is None:
                cells.append("-")
                continue
            cells.append(f"{100 * value:.2f} ({100 * (value - base):+.2f}"
                         + (f", {100 * share:.0f}%" if share is not None and model != "teacher" else "") + ")")
        steps = f"{r['steps']}" + (f" (best: {r['kept_step']})" if r["kept_step"] else "")
        lines.append(f"| {task} | {'floors' if condition == 'floors' else 'epochs alone'} | {steps} | {r['main']} | "
                     + (f"{100 * base:.2f}" if base is not None else "-") + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks import experiments
    from pipeline.orchestration.workspace import current_params
    from pipeline.params.config import deep_merge

    parser = experiments.parser(__doc__.splitlines()[0], "reports/budgets.md")
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS), help="tasks (default: all)")
    parser.add_argument("--seed", type=int, default=42, help="seed (default 42)")
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    off = epochs_alone(current_params(repo))
    names = {(task, condition): f"budgets-{task}-{condition}-{args.seed}" for task in args.tasks for condition in CONDITIONS}
    found = experiments.run(repo, {name: {**deep_merge(TASKS[task], {"seed": args.seed}),
                                          **(off if condition == "epochs" else {})}
                                   for (task, condition), name in names.items()}, args.existing)
    experiments.write(repo, args.out, markdown({key: result(found[name]) for key, name in names.items()}, args.seed) + "\n")


if __name__ == "__main__":
    main()
