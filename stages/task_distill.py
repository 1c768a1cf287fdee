"""Train one student by its recipe: `python -m stages.task_distill <student name from params>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.stage import CHECKPOINTS, PREPARED, REPORTS, TEACHER_LOGITS, only_argument, stage, student_dir
from pipeline.train import train_student


@stage
def main(params: Params, args: list[str]) -> None:
    name = only_argument(args, "task_distill", "student", "students", params.students)
    summary = train_student(name, params, student_dir(name), REPORTS / "history" / f"{name}.json",
                            PREPARED, TEACHER_LOGITS, CHECKPOINTS / "task_distill" / name)
    write_json(REPORTS / "students" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
