"""Pick the student the user's target names: `python -m stages.select` -> selected/ (a copy of its export
with selection.json), reports/selection.json, reports/selection.md and reports/plots/frontier.png."""

import json

from pipeline.artifacts import EXPORTS, REPORTS, SELECTED, atomic_path, write_json
from pipeline.errors import ModelError
from pipeline.orchestration.stage import log, stage
from pipeline.params.config import Params
from pipeline.report.plots import plot_frontier
from pipeline.report.select import select, selection_markdown, write_selected


@stage
def main(params: Params, args: list[str]) -> None:
    metrics = REPORTS / "metrics.json"
    if not metrics.is_file():
        raise ModelError(f"{metrics}: no evaluation to select from (run `dvc repro evaluate`)")
    report = json.loads(metrics.read_text(encoding="utf-8"))
    selection = select(report, params.select, params.evaluate.seed_spread)
    with atomic_path(REPORTS / "plots" / "frontier.png") as tmp:
        plot_frontier(report, selection, tmp)
    write_selected(selection, EXPORTS, SELECTED)
    write_json(REPORTS / "selection.json", selection)
    with atomic_path(REPORTS / "selection.md") as tmp:
        tmp.write_text(selection_markdown(report, selection), encoding="utf-8")
    log.info("selected %s: %s", selection["row"], selection["rule"])
    for line in selection["notes"]:
        log.warning(line)


if __name__ == "__main__":
    main()
