"""General distillation with one objective: `python -m stages.general_distill <tinybert|minilmv2|distilbert>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import general_distill
from pipeline.errors import ConfigError
from pipeline.stage import CHECKPOINTS, GENERAL, PREPARED, REPORTS, stage


@stage
def main(params: Params, args: list[str]) -> None:
    if len(args) != 1:
        raise ConfigError(f"usage: python -m stages.general_distill <objective>; general_distill.objectives: "
                          f"{', '.join(params.general_distill.objectives)}")
    objective = args[0]
    summary = general_distill(objective, params, GENERAL / objective,
                              REPORTS / "history" / f"general_distill_{objective}.json", PREPARED,
                              CHECKPOINTS / "general_distill" / objective)
    write_json(REPORTS / "general_distill" / f"{objective}.json", summary)


if __name__ == "__main__":
    main()
