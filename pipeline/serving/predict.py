"""Classify texts from the command line with an exported model or a trained model folder.

    python -m pipeline predict exports/bilstm_kd "a gorgeous film" "a dull , lifeless mess"
    python -m pipeline predict models/teacher --file sentences.txt --json
    cat sentences.txt | python -m pipeline predict exports/teacher --runtime onnx
    python -m pipeline predict selected "a gorgeous film"   # the student `select` picked, in its runtime

Texts come from the arguments, from --file (one example per line) or, when neither is given, from
standard input. For pair tasks (MRPC) each argument or line holds two tab-separated texts. Prints one
line per input: the predicted label and every label's probability, or the score of a regression model
(STS-B), or a JSON object with --json.
Problems with the input or the folder print `error: ...` and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import DataError, PipelineError

EXIT_ERROR = 2


def parse_args(argv: Sequence[str] | None, prog: str = "python -m pipeline predict") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an export folder, or a model folder (models/teacher, "
                                                  "models/students/NAME)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify (pair tasks: 'first<TAB>second')")
    parser.add_argument("--file", type=Path, help="read examples from this file, one per line")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input")
    parser.add_argument("--runtime", choices=("torch", "onnx", "int8"), default=None,
                        help="PyTorch, ONNX fp32 or ONNX int8 (the last two need an export folder); default: the "
                             "runtime the select stage picked for selected/, else torch")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for onnxruntime")
    parser.add_argument("--pairs", action="store_true",
                        help="each input is two tab-separated texts (an export knows whether its task has pairs; a "
                             "plain model folder may not)")
    args = parser.parse_intermixed_args(argv)  # texts may follow options
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def _lines_of_file(path: Path) -> list[tuple[str, str]]:
    """(where, line) for every line of a UTF-8 file; errors name the file."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a text file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [(f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), start=1)]


def _lines_of_stdin() -> list[tuple[str, str]]:
    if sys.stdin is None:
        return []
    if sys.stdin.isatty():
        print("reading texts from standard input, one per line (end with Ctrl-D)", file=sys.stderr)
    return [(f"<stdin>:{n}", line) for n, line in enumerate(sys.stdin.read().splitlines(), start=1)]


def read_examples(texts: Sequence[str], file: Path | None, is_pair: bool) -> tuple[list[str], list[str] | None]:
    """Texts (and second texts for pair models) from the arguments, --file or stdin; blank lines
    are skipped; a pair line without exactly one tab is an error naming its line."""
    if texts and file is not None:
        raise DataError("give texts as arguments or with --file, not both")
    if texts:
        lines = [(f"argument {n}", t) for n, t in enumerate(texts, start=1)]
    elif file is not None:
        lines = _lines_of_file(file)
    else:
        lines = _lines_of_stdin()
    lines = [(where, line) for where, line in lines if line.strip()]
    if not lines:
        raise DataError("no input texts: give TEXT arguments, --file PATH, or lines on standard input")
    if not is_pair:
        return [line.strip() for _, line in lines], None
    firsts, seconds = [], []
    for where, line in lines:
        first, second = _split_pair(line, where)
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def _split_pair(line: str, where: str) -> tuple[str, str]:
    fields = line.split("\t")
    if len(fields) != 2:
        found = "no tab" if len(fields) == 1 else f"{len(fields)} columns"
        raise DataError(f"{where}: this model classifies text pairs: expected two tab-separated columns, "
                        f"found {found}")
    first, second = (f.strip() for f in fields)
    if not first or not second:
        raise DataError(f"{where}: empty text in a pair")
    return first, second


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def format_lines(labels: Sequence[str], probs: np.ndarray, texts: Sequence[str],
                 pairs: Sequence[str] | None) -> list[str]:
    """Plain table: predicted label, `label=probability` per label, the text (and pair)."""
    width = max(len(label) for label in labels)
    out = []
    for i, row in enumerate(probs):
        cells = "  ".join(f"{label}={p:.4f}" for label, p in zip(labels, row))
        text = texts[i] if pairs is None else f"{texts[i]}  |  {pairs[i]}"
        out.append(f"{labels[int(row.argmax())]:<{width}}  {cells}  {text}")
    return out


def format_json(labels: Sequence[str], logits: np.ndarray, probs: np.ndarray, texts: Sequence[str],
                pairs: Sequence[str] | None) -> list[str]:
    out = []
    for i, row in enumerate(probs):
        record = {"text": texts[i]}
        if pairs is not None:
            record["text_pair"] = pairs[i]
        record.update(label=labels[int(row.argmax())],
                      probabilities={label: round(float(p), 6) for label, p in zip(labels, row)},
                      logits=[round(float(x), 6) for x in logits[i]])
        out.append(json.dumps(record, ensure_ascii=False))
    return out


def format_scores(scores: np.ndarray, texts: Sequence[str], pairs: Sequence[str] | None, as_json: bool) -> list[str]:
    """A regression model's score per input: a table line, or a JSON object with --json."""
    out = []
    for i, score in enumerate(scores):
        if as_json:
            record = {"text": texts[i], **({"text_pair": pairs[i]} if pairs is not None else {}),
                      "score": round(float(score), 6)}
            out.append(json.dumps(record, ensure_ascii=False))
        else:
            text = texts[i] if pairs is None else f"{texts[i]}  |  {pairs[i]}"
            out.append(f"score={float(score):.4f}  {text}")
    return out


def run(args: argparse.Namespace) -> list[str]:
    """The output lines; the folder is checked before any input is read, the model loaded after."""
    from pipeline.serving.runtimes import load_export, read_config, selected_runtime, task_of

    read_config(args.folder)
    task = task_of(args.folder)
    labels = list(task.labels)
    texts, pairs = read_examples(args.texts, args.file, task.is_pair or args.pairs)
    tabbed = sum("\t" in text for text in texts) if pairs is None else 0
    if tabbed:
        print(f"warning: as far as {args.folder} says, its task reads single texts, so the tabs in {tabbed} of "
              f"{len(texts)} inputs are read as part of one text; pass --pairs if each input is two tab-separated "
              "texts", file=sys.stderr)
    runtime = args.runtime or selected_runtime(args.folder) or "torch"
    predictor = load_export(args.folder, runtime, threads=args.threads)
    logits = np.asarray(predictor.logits(texts, pairs, args.batch_size), dtype=np.float64)
    if logits.shape[-1] != len(labels):
        raise DataError(f"{args.folder}: the model gives {logits.shape[-1]} scores but its config names "
                        f"{len(labels)} labels")
    if task.regression:
        return format_scores(logits[:, 0], texts, pairs, args.json)
    probs = softmax(logits)
    if args.json:
        return format_json(labels, logits, probs, texts, pairs)
    return format_lines(labels, probs, texts, pairs)


def _quiet_libraries() -> None:
    """Loading progress bars and advice from transformers would mix with the predictions."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None, prog: str = "python -m pipeline predict") -> int:
    args = parse_args(argv, prog)
    _quiet_libraries()
    try:
        lines = run(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
