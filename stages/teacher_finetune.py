"""The teacher -> models/teacher (save_pretrained + tokenizer): the pretrained teacher fine-tuned on the task,
or the user's fine-tuned classifier taken as given (teacher.finetune: false)."""

from pipeline.artifacts import REPORTS, write_json
from pipeline.orchestration.stage import stage
from pipeline.params.config import Params
from pipeline.training.teacher import teacher


@stage(data_parallel=True)
def main(params: Params, args: list[str]) -> None:
    write_json(REPORTS / "teacher.json", teacher(params))


if __name__ == "__main__":
    main()
