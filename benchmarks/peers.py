"""Our TinyBERT task steps against the same steps in TextBrewer (and torchdistill, where it is installed): the
same fine-tuned teacher, student initialisation (the general_distill@tinybert student), rows, batch size,
learning rate, warm-up, epochs, dropout and seed, each tool as its users run it. Prints, per step and tool,
the rows per second of the training loop and the dev metric after step 2, with each tool's ratio to ours,
and writes the table to --out.

Step 1 is TinyBERT's intermediate-layer distillation (embedding output and mapped hidden states by MSE,
attention by MSE, the teacher run on every batch); step 2 is soft CE at T on the teacher's logits plus CE on
the gold labels, from the step-1 student. Ours reads step 2's teacher logits from the teacher_logits stage and
batches rows of similar length; TextBrewer runs the teacher on every batch of step 2 and takes batches in
random order, padded to their longest row (not to a fixed length, which would favour ours more). Its
attention term compares attention probabilities (what Hugging Face models return), ours the pre-softmax
scores TinyBERT's paper uses.

Runs in a workspace after `dvc repro` (it reads models/teacher, models/general/tinybert, data/prepared and
data/teacher_logits) and writes only scratch folders besides --out. TextBrewer is the `peers` extra
(`pip install -e '.[peers]'`); torchdistill needs torchvision, whose PyPI wheels are built for CUDA builds
of torch and fail to load beside the CPU build this project pins, so the table says so unless it imports.

    python -m benchmarks.peers [--student tinybert4] [--rows 2000] [--step2-rows 8000] [--epochs 1]
        [--precision fp32] [--out reports/peers.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.artifacts import PREPARED, TEACHER_LOGITS, load_dataset_dir, texts_of
from pipeline.data.batches import encode_rows, task_rows, token_collator
from pipeline.methods import methods
from pipeline.methods.twostep import task_student
from pipeline.models import encoders
from pipeline.models.hf import load_teacher
from pipeline.params.config import deep_merge, parse_params
from pipeline.tasks import compute_metrics, prepared_task
from pipeline.training.driver import set_dropout
from pipeline.training.inference import classifier_logits

METHOD = "tinybert"


def step_params(base: dict[str, Any], student: str, rows: int, step2_rows: int, epochs: float, precision: str):
    """The workspace's params with the student's two budgets at `rows` and `step2_rows` rows x `epochs` (no step
    floors) and `precision`."""
    budget = {"epochs": epochs, "min_steps": 0, "max_steps": None}
    return parse_params(deep_merge(base, {"precision": precision, METHOD: {student: {
        "intermediate": {**budget, "max_rows": rows}, "prediction": {**budget, "max_rows": step2_rows}}}}))


def dev_metric(model, tokenizer, task, max_length: int) -> float:
    """The task's main dev metric of a classifier, computed one way for every tool."""
    dev = load_dataset_dir(PREPARED)["dev"]
    texts, pairs = texts_of(dev, task.is_pair)
    logits = classifier_logits(model.eval(), tokenizer, texts, pairs, 64, max_length)
    return compute_metrics(task, np.asarray(logits), np.asarray(dev["label"]))[task.main_metric]


# ---------------------------------------------------------------- ours
def ours(params, student: str, scratch: Path) -> list[dict[str, Any]]:
    """Both steps as the stages run them; rows per second as the Trainer measured its training loop."""
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.hf import load_tokenizer

    method = methods()[METHOD]
    found, previous = [], None
    for step in method.steps:
        out = scratch / f"ours-{step.name}"
        summary = step.run(method.run_of(step, params, student, {
            "out": out, "history": scratch / f"ours-{step.name}.json",
            "checkpoints": scratch / f"ours-{step.name}-checkpoints", "previous": previous}))
        found.append({"step": step.name, "rows": summary["train_rows"], "steps": summary["steps"],
                      "seconds": summary["train_seconds"], "rows_per_second": summary["train_samples_per_second"]})
        previous = out
    task = prepared_task()
    model = AutoModelForSequenceClassification.from_pretrained(str(previous))
    found[-1]["dev"] = dev_metric(model, load_tokenizer(str(previous), key=str(previous)), task, params.data.max_length)
    return found


# ---------------------------------------------------------------- TextBrewer
def textbrewer_steps(params, student: str, scratch: Path) -> list[dict[str, Any]]:
    """Both steps with TextBrewer's GeneralDistiller: intermediate matches for step 1, soft + hard CE for step 2."""
    import textbrewer
    from transformers import get_linear_schedule_with_warmup, set_seed

    from pipeline.methods.twostep import layer_map

    cfg = params.section(METHOD)[student]
    task = prepared_task()
    teacher, tokenizer = load_teacher()
    set_seed(params.seed)
    model, _ = task_student(params, task, cfg, teacher.config, f"{METHOD}.{student}")
    for m in (teacher, model):
        m.set_attn_implementation("eager")  # attention probabilities for TextBrewer's attention term
        m.config.output_hidden_states = m.config.output_attentions = True
    mapped = list(enumerate(layer_map(cfg.intermediate.layer_map, model, teacher, "layer_map"), start=1))
    n = len(mapped)
    step1_matches = ([{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1.0}]
                     + [{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1.0 / n}
                        for s, t in mapped]
                     + [{"layer_T": t - 1, "layer_S": s - 1, "feature": "attention", "loss": "attention_mse",
                         "weight": 1.0 / n} for s, t in mapped])
    if encoders.dims(model).hidden != encoders.dims(teacher).hidden:
        width = [encoders.dims(model).hidden, encoders.dims(teacher).hidden]
        for match in step1_matches:
            if match["feature"] == "hidden":
                match["proj"] = ["linear", *width]
    steps = {"intermediate": (cfg.intermediate, textbrewer.DistillationConfig(
                 temperature=1.0, kd_loss_weight=0.0, hard_label_weight=0.0, intermediate_matches=step1_matches)),
             "prediction": (cfg.prediction, textbrewer.DistillationConfig(
                 temperature=cfg.prediction.temperature, kd_loss_type="ce",
                 kd_loss_weight=cfg.prediction.weights.soft, hard_label_weight=cfg.prediction.weights.hard))}

    def adaptor(batch, outputs):
        return {"logits": outputs.logits, "hidden": outputs.hidden_states, "attention": outputs.attentions,
                "inputs_mask": batch["attention_mask"], "losses": [outputs.loss] if outputs.loss is not None else []}

    def inputs(batch):  # what a Hugging Face model takes; rows without a gold label (-1) are ignored by its CE
        labels = batch["labels"].clone()
        labels[labels < 0] = -100
        return {k: v for k, v in batch.items() if k in ("input_ids", "token_type_ids", "attention_mask")} | {
            "labels": labels}

    found = []
    for name, (budget, distill) in steps.items():
        set_seed(params.seed)
        rows = task_rows(TEACHER_LOGITS, cfg.augmentation, budget.max_rows, params.seed, cfg.augmented_rows,
                         cfg.unlabelled)
        data = encode_rows(tokenizer, rows, task, params.data.max_length).remove_columns(["length"]).to_list()
        loader = torch.utils.data.DataLoader(data, batch_size=budget.batch_size, shuffle=True,
                                             collate_fn=token_collator(tokenizer),
                                             generator=torch.Generator().manual_seed(params.seed))
        if budget.dropout is not None:
            set_dropout(model, budget.dropout)
        total = int(len(loader) * budget.epochs)
        optimizer = torch.optim.AdamW(model.parameters(), lr=budget.learning_rate, weight_decay=0.0)
        training = textbrewer.TrainingConfig(device="cpu", output_dir=str(scratch / f"textbrewer-{name}"),
                                             ckpt_frequency=1, log_dir=None)
        distiller = textbrewer.GeneralDistiller(train_config=training, distill_config=distill, model_T=teacher,
                                                model_S=model, adaptor_T=adaptor, adaptor_S=adaptor)
        start = time.perf_counter()
        with distiller:
            distiller.train(optimizer, loader, num_epochs=int(budget.epochs),
                            scheduler_class=get_linear_schedule_with_warmup, scheduler_args={"num_warmup_steps": int(budget.warmup_ratio * total),
                                            "num_training_steps": total},
                            batch_postprocessor=inputs)
        seconds = time.perf_counter() - start
        found.append({"step": name, "rows": len(data), "steps": total, "seconds": round(seconds, 1),
                      "rows_per_second": round(len(data) * budget.epochs / seconds, 1)})
    model.config.output_hidden_states = model.config.output_attentions = False
    found[-1]["dev"] = dev_metric(model, tokenizer, task, params.data.max_length)
    return found


def torchdistill_steps(params, student: str, scratch: Path) -> list[dict[str, Any]] | str:
    """torchdistill where it imports; else why not (a string for the table)."""
    try:
        import torchdistill  # noqa: F401
    except Exception as exc:  # ImportError, or torchvision's operators failing to load beside this torch
        return f"not run: torchdistill does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
    return ("not run: torchdistill imports, but this benchmark has no torchdistill config for TinyBERT's steps "
            "(its YAML runs torchvision-style image pipelines; see docs/benchmarks.md)")


# ---------------------------------------------------------------- the table
def markdown(results: dict[str, list[dict[str, Any]] | str], main: str, note: str) -> str:
    mine = {r["step"]: r for r in results["ours"]}
    lines = [note, "",
             f"| step | tool | rows | optimizer steps | seconds | rows/s | x ours | dev {main} after step 2 |",
             "|---|---|---|---|---|---|---|---|"]
    for tool, found in results.items():
        if isinstance(found, str):
            lines.append(f"| both | {tool} | - | - | - | - | - | {found} |")
            continue
        for r in found:
            ratio = round(r["rows_per_second"] / mine[r["step"]]["rows_per_second"], 2)
            dev = f"{100 * r['dev']:.2f}" if "dev" in r else "-"
            lines.append(f"| {r['step']} | {tool} | {r['rows']:,} | {r['steps']} | {r['seconds']} | "
                         f"{r['rows_per_second']} | {ratio} | {dev} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from pipeline.params.config import read_yaml
    from pipeline.report.evaluate import cpu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="tinybert4", help="a tinybert student of params.yaml (default tinybert4)")
    parser.add_argument("--rows", type=int, default=2000, help="step 1 rows (default 2000)")
    parser.add_argument("--step2-rows", type=int, default=8000, help="step 2 rows (default 8000)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each step (default 1)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="ours (TextBrewer trains in fp32 on a CPU; default fp32, like for like)")
    parser.add_argument("--out", type=Path, default=Path("reports/peers.md"))
    args = parser.parse_args(argv)
    params = step_params(read_yaml("params.yaml"), args.student, args.rows, args.step2_rows, args.epochs,
                         args.precision)
    if args.student not in params.section(METHOD):
        raise SystemExit(f"error: {args.student!r} is not a {METHOD} student of params.yaml")
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        scratch = Path(tmp)
        results = {"ours": ours(params, args.student, scratch),
                   "textbrewer": textbrewer_steps(params, args.student, scratch),
                   "torchdistill": torchdistill_steps(params, args.student, scratch)}
    c = cpu()
    batch = params.section(METHOD)[args.student].prediction.batch_size
    note = (f"TinyBERT's task steps for {args.student} in each tool: step 1 on {args.rows:,} rows, step 2 on "
            f"{args.step2_rows:,}, {args.epochs:g} epoch each, batch {batch} "
            f"(step 2), seed {params.seed}, {args.precision}; {torch.get_num_threads()} threads of {c['name']} "
            f"({', '.join(c['flags']) or 'no AVX2'}). Rows/s of the training loop (loading and tokenising aside); "
            "one seed each (evaluate.seed_spread is the spread over seeds).")
    table = markdown(results, prepared_task().main_metric, note)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
