"""Compare the exported models side by side: `python -m stages.evaluate` -> reports/metrics.json,
reports/report.md and the figures under reports/plots/."""

from pathlib import Path

from pipeline.artifacts import EXPORTS, PREPARED, REPORTS, load_dataset_dir, texts_of
from pipeline.orchestration.stage import log, stage
from pipeline.params.config import Params
from pipeline.report.evaluate import add_baseline, evaluate_exports, markdown_table, read_exports, warnings
from pipeline.report.outputs import write_report
from pipeline.tasks import baseline, prepared_task


@stage
def main(params: Params, args: list[str]) -> None:
    exports = read_exports(EXPORTS)
    prepared, task = load_dataset_dir(PREPARED), prepared_task()
    texts, pairs = texts_of(prepared["dev"], task.is_pair)
    report = evaluate_exports(EXPORTS, texts, pairs, params.evaluate)
    add_baseline(report, baseline(task, prepared["train"]["label"], prepared["dev"]["label"]))
    students = {name: f"{method.name}.{name}" for name, (method, _) in params.students().items()}
    report["warnings"] = warnings(report, students, params.evaluate.near_baseline, params.evaluate.seed_spread)
    histories = {label: Path(path) for info in exports.values() for label, path in info["histories"].items()}
    write_report(report, histories, REPORTS)
    log.info("\n%s", markdown_table(report))
    for line in report["warnings"]:
        log.warning(line)


if __name__ == "__main__":
    main()
