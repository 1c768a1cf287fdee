"""TinyBERT task step 1 (intermediate layers): `python -m stages.tinybert_intermediate <student>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import tinybert_intermediate
from pipeline.errors import ConfigError
from pipeline.stage import CHECKPOINTS, GENERAL, INTERMEDIATE, REPORTS, TEACHER, TEACHER_LOGITS, stage


@stage
def main(params: Params, args: list[str]) -> None:
    if len(args) != 1:
        raise ConfigError(f"usage: python -m stages.tinybert_intermediate <student>; "
                          f"TinyBERT students: {', '.join(params.tinybert)}")
    name = args[0]
    summary = tinybert_intermediate(name, params, INTERMEDIATE / name,
                                    REPORTS / "history" / f"{name}_intermediate.json", GENERAL, TEACHER,
                                    TEACHER_LOGITS, CHECKPOINTS / "tinybert_intermediate" / name)
    write_json(REPORTS / "intermediate" / f"{name}.json", summary)


if __name__ == "__main__":
    main()
