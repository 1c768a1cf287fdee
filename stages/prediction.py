"""Two-step task distillation, step 2 (prediction layer): `python -m stages.prediction <student>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import prediction_step
from pipeline.stage import (CHECKPOINTS, INTERMEDIATE, PREPARED, REPORTS, TEACHER, TEACHER_LOGITS, only_argument, stage,
                            student_dir)


@stage
def main(params: Params, args: list[str]) -> None:
    name = only_argument(args, "prediction", "student", "two-step students", params.twostep)
    summary = prediction_step(name, params, student_dir(name), REPORTS / "history" / f"{name}.json",
                              INTERMEDIATE / name, PREPARED, TEACHER_LOGITS, TEACHER, CHECKPOINTS / "prediction" / name)
    write_json(REPORTS / "students" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
