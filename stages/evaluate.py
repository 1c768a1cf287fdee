"""Compare the exported models side by side: `python -m stages.evaluate` -> reports/metrics.json,
reports/report.md and the figures under reports/plots/."""

from pathlib import Path

from pipeline.artifacts import EXPORTS, PREPARED, REPORTS, load_dataset_dir, texts_of
from pipeline.config import Params
from pipeline.evaluate import evaluate_exports, markdown_table, read_exports
from pipeline.report import write_report
from pipeline.stage import log, stage


@stage
def main(params: Params, args: list[str]) -> None:
    exports = read_exports(EXPORTS)
    texts, pairs = texts_of(load_dataset_dir(PREPARED)["dev"], exports["teacher"]["is_pair"])
    report = evaluate_exports(EXPORTS, texts, pairs, params.evaluate)
    histories = {label: Path(path) for info in exports.values() for label, path in info["histories"].items()}
    write_report(report, histories, REPORTS)
    log.info("\n%s", markdown_table(report))


if __name__ == "__main__":
    main()
