"""Two-step task distillation, step 1 (intermediate layers): `python -m stages.intermediate <student>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import intermediate_step
from pipeline.stage import CHECKPOINTS, GENERAL, INTERMEDIATE, REPORTS, TEACHER, TEACHER_LOGITS, only_argument, stage


@stage
def main(params: Params, args: list[str]) -> None:
    name = only_argument(args, "intermediate", "student", "two-step students", params.twostep)
    summary = intermediate_step(name, params, INTERMEDIATE / name, REPORTS / "history" / f"{name}_intermediate.json",
                                GENERAL, TEACHER, TEACHER_LOGITS, CHECKPOINTS / "intermediate" / name)
    write_json(REPORTS / "intermediate" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
