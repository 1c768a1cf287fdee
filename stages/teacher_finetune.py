"""Fine-tune the pretrained teacher on the task -> models/teacher (save_pretrained + tokenizer)."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.stage import CHECKPOINTS, PREPARED, REPORTS, TEACHER, stage
from pipeline.train import finetune_teacher


@stage
def main(params: Params, args: list[str]) -> None:
    summary = finetune_teacher(params, TEACHER, REPORTS / "history" / "teacher.json", PREPARED,
                               CHECKPOINTS / "teacher_finetune")
    write_json(REPORTS / "teacher.json", summary)


if __name__ == "__main__":
    main()
