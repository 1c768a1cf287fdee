"""One pass of the fine-tuned teacher over train + augmented text -> data/teacher_logits (Arrow)."""

from pipeline.config import Params
from pipeline.inference import build_teacher_logits
from pipeline.data import save_dataset
from pipeline.stage import AUGMENTED, PREPARED, TEACHER, TEACHER_LOGITS, stage


@stage
def main(params: Params, args: list[str]) -> None:
    dataset, meta = build_teacher_logits(params, TEACHER, PREPARED, AUGMENTED)
    save_dataset(dataset, TEACHER_LOGITS, meta=meta)


if __name__ == "__main__":
    main()
