"""One pass of the fine-tuned teacher over train + augmented text -> data/teacher_logits (Arrow)."""

from pipeline.artifacts import REPORTS, write_json
from pipeline.orchestration.stage import log, stage
from pipeline.params.config import Params
from pipeline.training.logits import build_logits


@stage(data_parallel=True)
def main(params: Params, args: list[str]) -> None:
    summary = build_logits(params)
    write_json(REPORTS / "teacher_logits.json", summary)
    log.info("teacher logits: %s", summary)


if __name__ == "__main__":
    main()
