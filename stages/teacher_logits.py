"""One pass of the fine-tuned teacher over train + augmented text -> data/teacher_logits (Arrow)."""

from pipeline.config import Params
from pipeline.inference import build_teacher_logits
from pipeline.stage import AUGMENTED, CHECKPOINTS, PREPARED, TEACHER, TEACHER_LOGITS, log, stage


@stage
def main(params: Params, args: list[str]) -> None:
    meta = build_teacher_logits(params, TEACHER, PREPARED, AUGMENTED, TEACHER_LOGITS, CHECKPOINTS / "teacher_logits")
    log.info("teacher logits: %s", meta)


if __name__ == "__main__":
    main()
