"""Teacher and every student side by side -> reports/metrics.json, reports/report.md, plots."""

from pipeline.config import Params
from pipeline.data import atomic_path, load_dataset_dir, write_json
from pipeline.evaluate import evaluate_models, load_predictor, markdown_table, plot_accuracy_latency
from pipeline.stage import PREPARED, REPORTS, TEACHER, log, stage, student_dir
from pipeline.tasks import get_task


@stage
def main(params: Params, args: list[str]) -> None:
    task = get_task(params.data.task)
    prepared = load_dataset_dir(PREPARED)
    predictors = [load_predictor("teacher", TEACHER, params.data.max_length)]
    predictors += [load_predictor(name, student_dir(name), params.data.max_length) for name in params.all_students()]
    report = evaluate_models(task, predictors, dict(prepared), params.evaluate)
    table = markdown_table(report)
    write_json(REPORTS / "metrics.json", report)
    with atomic_path(REPORTS / "report.md") as tmp:
        tmp.write_text(f"# {task.name}: teacher vs students\n\n{table}\n", encoding="utf-8")
    with atomic_path(REPORTS / "plots" / "accuracy_latency.png") as tmp:
        plot_accuracy_latency(report, tmp)
    log.info("\n%s", table)


if __name__ == "__main__":
    main()
