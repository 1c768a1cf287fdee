"""Fine-tune the pretrained teacher on the task -> models/teacher (save_pretrained + tokenizer)."""

from pipeline.artifacts import REPORTS, write_json
from pipeline.config import Params
from pipeline.stage import stage
from pipeline.teacher import finetune


@stage
def main(params: Params, args: list[str]) -> None:
    write_json(REPORTS / "teacher.json", finetune(params))


if __name__ == "__main__":
    main()
