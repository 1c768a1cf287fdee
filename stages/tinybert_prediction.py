"""TinyBERT task step 2 (prediction layer): `python -m stages.tinybert_prediction <student>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import tinybert_prediction
from pipeline.errors import ConfigError
from pipeline.stage import CHECKPOINTS, INTERMEDIATE, PREPARED, REPORTS, TEACHER_LOGITS, stage, student_dir


@stage
def main(params: Params, args: list[str]) -> None:
    if len(args) != 1:
        raise ConfigError(f"usage: python -m stages.tinybert_prediction <student>; "
                          f"TinyBERT students: {', '.join(params.tinybert)}")
    name = args[0]
    summary = tinybert_prediction(name, params, student_dir(name), REPORTS / "history" / f"{name}.json",
                                  INTERMEDIATE / name, PREPARED, TEACHER_LOGITS,
                                  CHECKPOINTS / "tinybert_prediction" / name)
    write_json(REPORTS / "students" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
