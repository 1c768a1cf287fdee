"""General distillation with one objective: `python -m stages.general_distill <objective>` (one of
general_distill.objectives: tinybert, minilmv2, distilbert)."""

from pipeline.artifacts import CHECKPOINTS, REPORTS, general_dir, general_history, write_json
from pipeline.errors import ConfigError
from pipeline.orchestration.stage import stage
from pipeline.params.config import Params
from pipeline.training.general import general_distill


@stage(data_parallel=True)
def main(params: Params, args: list[str]) -> None:
    objectives = params.general_distill.objectives
    if len(args) != 1:
        raise ConfigError(f"usage: python -m stages.general_distill <objective>; general_distill.objectives: "
                          f"{', '.join(objectives)}")
    objective = args[0]
    summary = general_distill(objective, params, general_dir(objective), general_history(objective),
                              CHECKPOINTS / "general_distill" / objective)
    write_json(REPORTS / "general_distill" / f"{objective}.json", summary)


if __name__ == "__main__":
    main()
