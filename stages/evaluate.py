"""Export every model and compare them side by side: `python -m stages.evaluate`.

Writes exports/<model>/ (HF or BiLSTM folder, ONNX fp32 + int8, model card), reports/metrics.json,
reports/report.md and the figures under reports/plots/."""

from pipeline.config import Params
from pipeline.data import load_dataset_dir
from pipeline.evaluate import markdown_table
from pipeline.report import evaluate_and_export
from pipeline.stage import EXPORTS, PREPARED, REPORTS, TEACHER, log, stage, student_dir
from pipeline.tasks import get_task


@stage
def main(params: Params, args: list[str]) -> None:
    task = get_task(params.data.task)
    students = {name: student_dir(name) for name in params.all_students()}
    report = evaluate_and_export(params, task, load_dataset_dir(PREPARED), TEACHER, students, EXPORTS, REPORTS)
    log.info("\n%s", markdown_table(report))


if __name__ == "__main__":
    main()
