"""Read the task's raw data, validate it, write data/prepared (a DatasetDict) and its summary."""

from pipeline.artifacts import PREPARED, REPORTS, save_dataset, write_json
from pipeline.data.prepare import prepare
from pipeline.orchestration.stage import log, stage
from pipeline.params.config import Params


@stage
def main(params: Params, args: list[str]) -> None:
    dataset, summary = prepare(params.data, params.seed)
    save_dataset(dataset, PREPARED, meta=summary)
    write_json(REPORTS / "prepare.json", summary)
    log.info("prepared %s: %s", summary["task"]["name"], summary["rows"])


if __name__ == "__main__":
    main()
