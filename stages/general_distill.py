"""General distillation with one objective: `python -m stages.general_distill <tinybert|minilmv2|distilbert>`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import general_distill
from pipeline.stage import CHECKPOINTS, GENERAL, PREPARED, REPORTS, only_argument, stage


@stage
def main(params: Params, args: list[str]) -> None:
    objective = only_argument(args, "general_distill", "objective", "general_distill.objectives",
                              params.general_distill.objectives)
    summary = general_distill(objective, params, GENERAL / objective,
                              REPORTS / "history" / f"general_distill_{objective}.json", PREPARED,
                              CHECKPOINTS / "general_distill" / objective)
    write_json(REPORTS / "general_distill" / f"{objective}.json", summary)


if __name__ == "__main__":
    main()
