"""The one training driver. Every stage that trains (the teacher, each step of each student method,
general distillation) describes a `Job` and calls `run`, which builds the Hugging Face Trainer, resumes
an interrupted run of the same inputs, trains, evaluates on dev, saves the artifact atomically, writes
the training history and returns the stage's summary. No stage builds a Trainer itself.

A job's model is trained as is: its forward(**batch) returns {"loss", <term>..., "logits"}, so a
recipe's named loss terms reach the history (each averaged over the logging interval, beside the
loss), and a plain HF classifier (the teacher) works too.

Under params `processes` N (pipeline.distributed) every process runs the same job: the Trainer gives each
a share of every global batch (batch_size / N rows of the same length-grouped batch one process would
take), averages their gradients, and rank 0 alone writes the artifact, the history and the checkpoints'
weights and optimizer state (each process adds its RNG state to a checkpoint). The
checkpoint fingerprint leaves N out: a run resumes from a checkpoint written under any N.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pipeline import distributed
from pipeline.artifacts import atomic_path
from pipeline.tasks import Task, compute_metrics
from pipeline.training.checkpoint import CheckpointDir, fingerprint
from pipeline.training.inference import use_attention_for, use_bf16

if TYPE_CHECKING:
    from pipeline.params.config import Params

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What one training run needs; `run(job)` does the rest."""

    model: nn.Module  # what the Trainer trains: a recipe around a student, or an HF model
    train: Any  # datasets.Dataset of model inputs (+ labels, teacher logits, length), read into memory by run
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    budget: Any  # epochs, min_steps, max_steps, learning_rate, batch_size, warmup_ratio, dropout (schema.Budget or alike)
    fingerprint: dict[str, Any]  # the stage's declared params keys and values (schema.declared): what defines the
    # result, so a checkpoint resumes only if they match
    inputs: Sequence[Path]  # input artifacts, hashed into the checkpoint fingerprint
    save: Callable[[Path], None]  # writes the trained artifact into a folder
    out: Path  # the artifact folder (written atomically)
    history: Path  # the Trainer's log history, as JSON
    checkpoints: Path  # scratch folder for resumable checkpoints
    dev: Any = None  # evaluated per epoch (or every eval_steps) and at the end when given (needs `task`)
    task: Task | None = None
    eval_steps: int | None = None
    keep_best: bool = False  # end with the weights of the best dev evaluation (main metric), not the last step's
    weight_decay: float = 0.0
    group_by_length: bool = True  # batches of similar length (needs a `length` column)
    mixed_precision: bool = True  # bf16 autocast where params `precision` allows it
    terms: Sequence[str] = ()  # loss terms the model returns, logged beside the loss
    summary: dict[str, Any] = field(default_factory=dict)  # what the stage reports besides the run's numbers


class Rows(torch.utils.data.Dataset):
    """A training set as plain Python rows, so that the Trainer reads each example from a list rather than
    through Arrow formatting (a third of a BiLSTM step, a tenth of a small Transformer's); `lengths`, its
    `length` column, is what length-grouped batching sorts by."""

    def __init__(self, dataset):
        self.rows = dataset.to_list()
        self.lengths = [row["length"] for row in self.rows] if "length" in dataset.column_names else None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


@functools.cache
def _trainer_class():
    """transformers.Trainer that also logs the named loss terms a model returns (imported on first use:
    stages that do not train never pay for it)."""
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class TermTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                 num_items_in_batch=num_items_in_batch)
            if model.training and isinstance(outputs, dict):
                for term in self.terms:
                    if term in outputs:
                        self.term_sums[term] = self.term_sums.get(term, 0.0) + outputs[term].detach().float()
                self.term_steps += 1
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            dataset = self.train_dataset if train_dataset is None else train_dataset
            if self.args.train_sampling_strategy == "group_by_length" and getattr(dataset, "lengths", None):
                # grouped by the global batch: N processes split the batches one process would take
                return shared_order(LengthGroupedSampler(self.args.train_batch_size
                                                         * self.args.gradient_accumulation_steps
                                                         * self.args.world_size, lengths=dataset.lengths))
            return super()._get_train_sampler(train_dataset)

        def log(self, logs, *args, **kwargs):
            if "loss" in logs and self.term_steps:  # each term averaged over the steps since the last log
                means = {term: float(total) / self.term_steps for term, total in self.term_sums.items()}
                for term, value in averaged_over_processes(means, self.terms).items():
                    logs[f"loss/{term}"] = round(value, 4)
                self.term_sums, self.term_steps = {}, 0
            super().log(logs, *args, **kwargs)

    return TermTrainer


def shared_order(sampler):
    """`sampler` as it is in a one-process run; with N processes, one order for all of them: the one rank 0
    draws. (It draws from the global RNG, which dropout advances by each process's share of the rows: left
    alone, the processes would part ways from the second epoch and take some rows twice, others never.)"""
    if distributed.world_size() == 1:
        return sampler
    import torch.distributed as dist

    class SharedOrder(torch.utils.data.Sampler):
        def __len__(self) -> int:
            return len(sampler)

        def __iter__(self):
            order = [list(sampler)]
            dist.broadcast_object_list(order, src=0)
            return iter(order[0])

    return SharedOrder()


def averaged_over_processes(means: dict[str, float], terms: Sequence[str]) -> dict[str, float]:
    """Each process's term means averaged over the processes (as the Trainer averages the loss it logs);
    in a one-process run, the means as they are."""
    if distributed.world_size() == 1:
        return means
    import torch.distributed as dist

    values = torch.tensor([means.get(term, math.nan) for term in terms], dtype=torch.float64)
    dist.all_reduce(values)
    return {term: float(v) / distributed.world_size() for term, v in zip(terms, values) if term in means}


def make_trainer(terms: Sequence[str], **kwargs):
    """A Trainer (keyword arguments as transformers.Trainer's) logging the loss `terms` beside the loss."""
    trainer = _trainer_class()(**kwargs)
    trainer.terms, trainer.term_sums, trainer.term_steps = tuple(terms), {}, 0
    # Every model here returns the mean loss of its rows, whatever keyword arguments its forward takes: the
    # Trainer must average over accumulated passes and processes itself, not scale by their count.
    trainer.model_accepts_loss_kwargs = False
    return trainer


def training_arguments(output_dir: str, *, epochs: float, learning_rate: float, batch_size: int, seed: int,
                       checkpoint_steps: int, passes: int = 1, max_steps: int = -1, warmup: float = 0.0,
                       weight_decay: float = 0.0, eval_batch_size: int = 128, evaluate: bool = True,
                       eval_steps: int | None = None, group_by_length: bool = True, bf16: bool = False):
    """Trainer settings shared by every job: dev evaluation per epoch or every `eval_steps` (when `evaluate`), resumable
    checkpoints, length-grouped batches (padding waste matters on CPU), fused AdamW (its optimizer
    step is several times faster on CPU than the per-tensor loop, which dominates small models),
    bf16 autocast when `bf16` (see pipeline.training.inference.use_bf16)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,  # per pass of one process: the global batch / processes / passes
        gradient_accumulation_steps=passes,
        per_device_eval_batch_size=eval_batch_size,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        eval_strategy=("steps" if eval_steps else "epoch") if evaluate else "no",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=checkpoint_steps,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=10,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        optim="adamw_torch_fused",
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),  # Trainer refuses CPU bf16, and runs no gloo group, unless told
        seed=seed,
        data_seed=seed,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_drop_last=False,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def planned_steps(rows: int, budget) -> tuple[int, str]:
    """The optimizer steps a budget gives `rows` training rows, and why: `epochs` over them (the last batch
    of an epoch may be short), raised to `min_steps` or cut to `max_steps`."""
    by_epochs = math.ceil(budget.epochs * math.ceil(rows / budget.batch_size))
    said = f"{budget.epochs:g} epoch(s) of {rows} rows at batch {budget.batch_size} are {by_epochs} steps"
    floor, ceiling = getattr(budget, "min_steps", 0), getattr(budget, "max_steps", None)
    if floor and by_epochs < floor:
        return floor, f"min_steps {floor}: {said}"
    if ceiling and by_epochs > ceiling:
        return ceiling, f"max_steps {ceiling}: {said}"
    return by_epochs, f"epochs: {said}"


class BestWeights:
    """The weights of the best dev evaluation so far by the task's main metric, kept in the run's checkpoint
    folder (so that a resumed run still knows them); NaN counts as worst."""

    def __init__(self, folder: Path, metric: str):
        self.weights, self.record, self.key = folder / "best.pt", folder / "best.json", f"eval_{metric}"

    def best(self) -> dict[str, Any] | None:
        return json.loads(self.record.read_text(encoding="utf-8")) if self.record.is_file() else None

    def callback(self):
        from transformers import TrainerCallback

        keeper = self

        class KeepBest(TrainerCallback):
            def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
                if not distributed.is_main():  # rank 0 keeps the weights for every process
                    return
                value = metrics.get(keeper.key, math.nan)
                best = keeper.best()
                if not math.isnan(value) and (best is None or value > best["value"]):
                    with atomic_path(keeper.weights) as tmp:
                        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
                    with atomic_path(keeper.record) as tmp:
                        tmp.write_text(json.dumps({"step": state.global_step, "value": value, "metrics": metrics}),
                                       encoding="utf-8")

        return KeepBest()

    def restore(self, model: nn.Module, final: dict[str, float], step: int) -> tuple[dict[str, float], int]:
        """The best evaluation's metrics and step, its weights loaded into `model` where it beat the last step."""
        best = self.best()
        if best is None or best["step"] == step or not best["value"] > final.get(self.key, math.nan):
            return final, step
        model.load_state_dict(torch.load(self.weights, map_location="cpu"))
        log.info("kept the weights of step %d (dev %s %.4f) over the last step's", best["step"], self.key,
                 best["value"])
        return best["metrics"], best["step"]


def set_dropout(model: nn.Module, p: float) -> None:
    """Every dropout of the trained model (a recipe's frozen teacher is outside its module tree)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def final_evaluation(trainer) -> dict[str, float]:
    """Dev metrics of the trained model: those of the epoch-end evaluation when it ran at the last step
    (a whole number of epochs), else a new evaluation."""
    last = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last is not None and last.get("step") == trainer.state.global_step:
        return last
    return trainer.evaluate()


def metrics_fn(task: Task):
    def compute(prediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return compute_metrics(task, np.asarray(logits), np.asarray(prediction.label_ids))

    return compute


def run(job: Job, params: Params) -> dict[str, Any]:
    """Train `job` (resuming an interrupted run of the same fingerprint), evaluate it on dev, save its
    artifact atomically, write its history, clear its checkpoints; return the stage summary."""
    bf16 = job.mixed_precision and use_bf16(params.precision)
    checkpoints = CheckpointDir(job.checkpoints, fingerprint({**job.fingerprint, "bf16": bf16}, job.inputs))
    b = job.budget
    evaluate = job.dev is not None
    steps, steps_why = planned_steps(len(job.train), b)
    per_pass, passes = distributed.batch_passes(b.batch_size, str(job.out), params.device_batch)
    args = training_arguments(str(checkpoints.folder), epochs=b.epochs, learning_rate=b.learning_rate,
                              batch_size=per_pass, passes=passes, seed=params.seed,
                              checkpoint_steps=params.checkpoint_steps,
                              max_steps=-1 if steps_why.startswith("epochs") else steps,
                              warmup=b.warmup_ratio, weight_decay=job.weight_decay, evaluate=evaluate,
                              eval_steps=job.eval_steps, group_by_length=job.group_by_length, bf16=bf16)
    use_attention_for(job.model)
    if getattr(b, "dropout", None) is not None:
        set_dropout(job.model, b.dropout)
    can_resume = checkpoints.start() if distributed.is_main() else True  # the others follow rank 0's choice
    distributed.barrier()
    best = BestWeights(checkpoints.folder, job.task.main_metric) if evaluate and job.keep_best else None
    trainer = make_trainer(job.terms, model=job.model, args=args, train_dataset=Rows(job.train),
                           eval_dataset=job.dev, data_collator=job.collate,
                           compute_metrics=metrics_fn(job.task) if evaluate else None,
                           callbacks=[best.callback()] if best else None)
    resume = checkpoints.latest_trainer_checkpoint() if can_resume else None
    if resume:
        log.info("resuming from %s", resume)
    log.info("%s: %d optimizer steps (%s)", job.out, steps, steps_why)
    result = trainer.train(resume_from_checkpoint=resume)
    summary = dict(job.summary)
    summary.update(steps=trainer.state.global_step, steps_why=steps_why, epochs_run=round(trainer.state.epoch, 2))
    if distributed.world_size() > 1 or passes > 1:
        summary.update(processes=distributed.world_size(), passes_per_step=passes)
    final = final_evaluation(trainer) if evaluate else None  # every process takes part in an evaluation
    if not distributed.is_main():
        distributed.barrier()  # rank 0 writes what follows
        return summary
    if evaluate:
        if best:
            final, kept = best.restore(job.model, final, trainer.state.global_step)
            if kept != trainer.state.global_step:
                summary["kept_step"] = kept
        summary.update({f"dev_{m}": round(final[f"eval_{m}"], 4) for m in job.task.metrics})
    with atomic_path(job.out) as tmp:
        tmp.mkdir()
        job.save(tmp)
    with atomic_path(job.history) as tmp:
        tmp.write_text(json.dumps(trainer.state.log_history, indent=1) + "\n", encoding="utf-8")
    checkpoints.complete()
    summary.update(precision="bf16" if bf16 else "fp32", train_rows=len(job.train),
                   train_seconds=round(result.metrics["train_runtime"], 1),
                   train_samples_per_second=round(result.metrics["train_samples_per_second"], 1))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if losses:
        summary["final_train_loss"] = round(losses[-1], 4)
    log.info("%s: %s", job.out, summary)
    distributed.barrier()
    return summary
