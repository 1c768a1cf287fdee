"""TinyBERT stage 1 (or DistilBERT's objective): `python -m stages.general_distill`."""

from pipeline.config import Params
from pipeline.data import write_json
from pipeline.distill import general_distill
from pipeline.stage import CHECKPOINTS, GENERAL, PREPARED, REPORTS, stage


@stage
def main(params: Params, args: list[str]) -> None:
    summary = general_distill(params, GENERAL, REPORTS / "history" / "general_distill.json", PREPARED,
                              CHECKPOINTS / "general_distill")
    write_json(REPORTS / "general_distill.json", summary)


if __name__ == "__main__":
    main()
