"""One pass of the fine-tuned teacher over train + augmented text -> data/teacher_logits (Arrow)."""

from pipeline.config import Params
from pipeline.inference import build_teacher_logits
from pipeline.data import write_json
from pipeline.stage import AUGMENTED, CHECKPOINTS, PREPARED, REPORTS, TEACHER, TEACHER_LOGITS, log, stage


@stage
def main(params: Params, args: list[str]) -> None:
    summary = build_teacher_logits(params, TEACHER, PREPARED, AUGMENTED, TEACHER_LOGITS,
                                   CHECKPOINTS / "teacher_logits")
    write_json(REPORTS / "teacher_logits.json", summary)
    log.info("teacher logits: %s", summary)


if __name__ == "__main__":
    main()
