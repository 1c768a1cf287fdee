"""Export the teacher and every student: `python -m stages.export` -> exports/<model>/ (model folder,
ONNX fp32 checked against PyTorch, ONNX int8, quality of each runtime, model card)."""

from pipeline.artifacts import EXPORTS, HISTORY, PREPARED, TEACHER, general_history, load_dataset_dir, student_dir
from pipeline.orchestration.stage import stage
from pipeline.params.config import Params
from pipeline.serving.card import card_info
from pipeline.serving.export import export_all
from pipeline.tasks import prepared_task


def training_logs(name: str, params: Params) -> dict[str, str]:
    """The training histories behind a model, labelled for the training-curves figure."""
    if name == "teacher":  # a teacher taken as given was not trained here
        return {"teacher": str(HISTORY / "teacher.json")} if params.teacher.finetune else {}
    method, cfg = params.students()[name]
    logs = {label: str(path) for label, path in method.histories(name).items()}
    init = getattr(cfg, "init", None)
    if init in params.general_distill.objectives:
        logs[f"general_distill ({init})"] = str(general_history(init))
    return logs


@stage
def main(params: Params, args: list[str]) -> None:
    models = {"teacher": TEACHER, **{name: student_dir(name) for name in params.students()}}
    export_all({name: (folder, card_info(name, params), training_logs(name, params)) for name, folder in models.items()},
               prepared_task(), load_dataset_dir(PREPARED), params.export, params.data.max_length,
               EXPORTS)


if __name__ == "__main__":
    main()
