"""Train one DistilBERT-style student: `python -m stages.distil_task <name from params.distil>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import train_distil_student
from pipeline.stage import CHECKPOINTS, PREPARED, REPORTS, TEACHER, TEACHER_LOGITS, only_argument, stage, student_dir


@stage
def main(params: Params, args: list[str]) -> None:
    name = only_argument(args, "distil_task", "student", "distil students", params.distil)
    summary = train_distil_student(name, params, student_dir(name), REPORTS / "history" / f"{name}.json", TEACHER,
                                   PREPARED, TEACHER_LOGITS, CHECKPOINTS / "distil_task" / name)
    write_json(REPORTS / "students" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
