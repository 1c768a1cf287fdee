"""Which student shapes keep their FLOP savings on this CPU, before any training: a BERT classifier of the
teacher's shape and one of each student shape, random weights (speed does not depend on them), exported
as the export stage does with the params' export settings (fused graph by default; dynamic int8, or
fp32), timed in onnxruntime at batch 1 and at batch 32 in paired rounds against the teacher's shape.
Each shape's speed-up over the teacher stands beside its FLOP ratio, and the share of that ratio it
keeps: use it to choose `general_distill.student` for the CPU that will serve the students. Usage:

    python -m benchmarks.shapes [--teacher <params' teacher.pretrained>] [--shapes 4x312x12x1200 4x312x4x1200]
        [--runtime int8|onnx] [--threads 2] [--rounds 15] [--tokens 25] [--batch-tokens 50]

A shape is LAYERSxHIDDENxHEADSxINTERMEDIATE. Without --shapes: the params' student shape, the same with
fewer heads, and the teacher's width at the student's depth. Sequences are random token ids, `--tokens`
long at batch 1 (about an SST-2 sentence) and up to `--batch-tokens` at batch 32 (padded, as a batch of
sentences of different lengths is).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.speed import median_interval, paired_speedups
from pipeline.errors import ConfigError, ModelError
from pipeline.models import encoders
from pipeline.models import transformer as tfm
from pipeline.models.hf import resolve_pretrained
from pipeline.params.config import ExportConfig, StudentShape, load_params
from pipeline.serving.graphs import fuse, write_int8, write_onnx
from pipeline.serving.kinds import Feeds, LogitsOnly
from pipeline.serving.runtimes import onnx_session, run_session

INPUTS = ["input_ids", "token_type_ids", "attention_mask"]
BATCH = 32


def parse_shape(text: str) -> StudentShape:
    """LAYERSxHIDDENxHEADSxINTERMEDIATE, e.g. 4x312x12x1200."""
    try:
        return StudentShape.parse(text)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def label(shape: StudentShape) -> str:
    return shape.label()


def default_shapes(student: StudentShape, teacher: StudentShape) -> list[StudentShape]:
    """The student shape, the same with half and a third of its heads (where they divide its width), and
    the teacher's width at the student's depth."""
    fewer = [student.model_copy(update={"heads": h}) for h in (student.heads // 2, student.heads // 3)
             if h > 0 and student.hidden % h == 0]
    wide = teacher.model_copy(update={"layers": student.layers})
    out: list[StudentShape] = []
    for shape in [student, *fewer, wide]:
        if shape not in out and shape != teacher:
            out.append(shape)
    return out


def random_classifier(teacher_config, shape: StudentShape) -> torch.nn.Module:
    """A BERT classifier of `shape` with the teacher's vocabulary and positions. Its 1-D weights (biases,
    LayerNorm scales) are made distinct: freshly initialised they are all 0 or 1, and the ONNX exporter
    shares equal constants, which int8 quantisation then turns into a dequantisation at every run, a cost a
    trained model does not have."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tfm.student_config(teacher_config, shape)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.05 * torch.randn_like(p))
    model.set_attn_implementation("eager")  # the attention pattern onnxruntime's fusion recognises
    return model


def export_shape(model: torch.nn.Module, shape: StudentShape, folder: Path, runtime: str, export: ExportConfig) -> Path:
    """The fp32 graph, and its dynamic int8 for runtime int8, as the export stage makes them with `export`'s
    settings (fused or not, 7- or 8-bit weights)."""
    fp32 = folder / f"{label(shape)}.onnx"
    sample = (torch.randint(1, model.config.vocab_size, (2, 8)), torch.zeros(2, 8, dtype=torch.long),
              torch.tensor([[1] * 8, [1] * 2 + [0] * 6]))
    write_onnx(LogitsOnly(model, INPUTS), sample, INPUTS, {n: {0: "batch", 1: "sequence"} for n in INPUTS}, fp32)
    if export.fuse_graph:
        fuse(fp32, shape.hidden, shape.heads)
    if runtime == "onnx":
        return fp32
    int8 = folder / f"{label(shape)}.int8.onnx"
    write_int8(fp32, int8, reduce_range=export.int8_reduce_range)
    return int8


def synthetic_feeds(batch: int, tokens: int, count: int, vocab: int, seed: int) -> list[Feeds]:
    """`count` batches of random token ids; at batch > 1 each row's length is drawn from 8..tokens and
    the batch padded to `tokens`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        mask = np.ones((batch, tokens), np.int64)
        if batch > 1:
            for row, length in enumerate(rng.integers(min(8, tokens), tokens + 1, batch)):
                mask[row, length:] = 0
        low, high = (1000, 2000) if vocab > 2000 else (1, vocab)  # ordinary word pieces, clear of special tokens
        ids = rng.integers(low, high, (batch, tokens)).astype(np.int64)
        out.append({"input_ids": ids * mask, "token_type_ids": np.zeros_like(ids), "attention_mask": mask})
    return out


class Timed:
    """A graph fed fixed batches, with the batches()/run() of a predictor, for paired_speedups."""

    def __init__(self, session, feeds: list[Feeds]):
        self.session, self.feeds = session, feeds

    def batches(self, texts, pairs, batch_size):
        return [(None, f) for f in self.feeds]

    def run(self, feeds: Feeds) -> np.ndarray:
        return run_session(self.session, feeds)


def flops_per_example(model: torch.nn.Module, feeds: Feeds) -> float:
    inputs = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(**inputs)
    return counter.get_total_flops() / len(feeds["input_ids"])


def _cell(values: Sequence[float], scale: float = 1.0) -> str:
    low, high, _ = median_interval(values)
    return f"{statistics.median(values) / scale:.2f} ({low / scale:.2f}-{high / scale:.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="teacher whose shape is the reference (default: params' teacher.pretrained)")
    parser.add_argument("--shapes", nargs="+", type=parse_shape,
                        help="student shapes, LAYERSxHIDDENxHEADSxINTERMEDIATE")
    parser.add_argument("--runtime", choices=["int8", "onnx"], default="int8", help="int8 (dynamic) or onnx (fp32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15, help="paired rounds per shape and batch size")
    parser.add_argument("--tokens", type=int, default=25, help="tokens per sequence at batch 1")
    parser.add_argument("--batch-tokens", type=int, default=50, help="padded length of a batch of 32")
    parser.add_argument("--examples", type=int, default=64, help="sequences timed one at a time per round")
    args = parser.parse_args(argv)
    from transformers import AutoConfig

    try:
        params = load_params()
        key = "--teacher" if args.teacher else "teacher.pretrained"
        t_config = AutoConfig.from_pretrained(resolve_pretrained(args.teacher or params.teacher.pretrained, key))
        d = encoders.dims(t_config)
    except (ConfigError, ModelError, OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    teacher = StudentShape(layers=d.layers, hidden=d.hidden, heads=d.heads, intermediate=d.intermediate)
    shapes = args.shapes or default_shapes(params.general_distill.student, teacher)
    torch.set_num_threads(args.threads)
    singles = synthetic_feeds(1, args.tokens, args.examples, t_config.vocab_size, 0)
    batches = synthetic_feeds(BATCH, args.batch_tokens, 4, t_config.vocab_size, 1)

    with tempfile.TemporaryDirectory() as tmp:
        timed, flops, params_count = {}, {}, {}
        for shape in [teacher, *shapes]:
            model = random_classifier(t_config, shape)
            flops[label(shape)] = flops_per_example(model, singles[0])
            params_count[label(shape)] = sum(p.numel() for p in model.parameters())
            session = onnx_session(export_shape(model, shape, Path(tmp), args.runtime, params.export), args.threads)
            timed[label(shape)] = (Timed(session, singles), Timed(session, batches))
        ref = label(teacher)
        graph = "fused" if params.export.fuse_graph else "plain"
        print(f"\n{args.runtime} graphs ({graph}), {args.threads} threads, random weights, {args.rounds} paired rounds "
              f"against the teacher's shape; batch 1: {args.examples} sequences of {args.tokens} tokens; batch "
              f"{BATCH}: padded to {args.batch_tokens}. x: speed-up over the teacher, median (95% interval); "
              "share: of the FLOP ratio")
        header = ["shape (layers x hidden x heads x ffn)", "parameters", "MFLOP/ex", "FLOP ratio", "x b1",
                  "share b1", f"x b{BATCH}", f"share b{BATCH}"]
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        print(f"| {ref} (teacher) | {params_count[ref] / 1e6:.2f}M | {flops[ref] / 1e6:.1f} | 1.00 | 1.00 | 1.00 | "
              "1.00 | 1.00 |")
        for shape in shapes:
            name = label(shape)
            ratio = flops[ref] / flops[name]
            b1 = paired_speedups(timed[ref][0], timed[name][0], [], None, args.rounds)
            b32 = paired_speedups(timed[ref][1], timed[name][1], [], None, args.rounds)
            print(f"| {name} | {params_count[name] / 1e6:.2f}M | {flops[name] / 1e6:.1f} | {ratio:.2f} | {_cell(b1)} "
                  f"| {_cell(b1, ratio)} | {_cell(b32)} | {_cell(b32, ratio)} |")


if __name__ == "__main__":
    main()
