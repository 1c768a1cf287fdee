"""Throughput of the teacher_logits pass vs transformers.pipeline("text-classification").

Same teacher, same sentences, same threads, one process. Prints a table and the ratio (target >= 3x
over the pipeline's default). Usage:

    python -m benchmarks.teacher_logits [--model models/teacher] [--n 1000] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from pipeline.artifacts import PREPARED, TEACHER, TEACHER_LOGITS, load_dataset_dir, texts_of
from pipeline.models.hf import load_classifier, load_tokenizer
from pipeline.training.inference import classifier_logits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(TEACHER), help="fine-tuned teacher folder")
    parser.add_argument("--n", type=int, default=1000, help="sentences (train + augmented, shuffled)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size of our pass")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from transformers import pipeline

    texts = texts_of(load_dataset_dir(TEACHER_LOGITS if TEACHER_LOGITS.exists() else PREPARED / "train"), False)[0]
    random.Random(0).shuffle(texts)
    texts = texts[: args.n]
    model = load_classifier(args.model, key="--model").eval()
    tokenizer = load_tokenizer(args.model, key="--model")
    max_length = 128

    def ours() -> np.ndarray:
        return classifier_logits(model, tokenizer, texts, batch_size=args.batch_size, max_length=max_length,
                                 progress=False)

    def hf(batch_size: int | None):
        clf = pipeline("text-classification", model=model, tokenizer=tokenizer, device=-1, top_k=None,
                       truncation=True, max_length=max_length)
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        return lambda: clf(texts, **kwargs)

    runs = [("transformers.pipeline (default batch)", hf(None)),
            (f"transformers.pipeline (batch {args.batch_size})", hf(args.batch_size)),
            (f"teacher_logits pass (length-bucketed, batch {args.batch_size})", ours)]
    ours()  # warm-up
    results = []
    outputs = {}
    for name, fn in runs:
        start = time.perf_counter()
        outputs[name] = fn()
        results.append((name, len(texts) / (time.perf_counter() - start)))

    # Same answers: the pipeline's probabilities equal softmax(our logits).
    probs = torch.softmax(torch.from_numpy(outputs[runs[-1][0]]), -1).numpy()
    label_ids = model.config.label2id
    hf_probs = np.array([[{d["label"]: d["score"] for d in row}[lab] for lab in sorted(label_ids, key=label_ids.get)]
                         for row in outputs[runs[0][0]]])
    max_diff = float(np.abs(hf_probs - probs).max())

    base = results[0][1]
    print(f"\n{len(texts)} sentences, {args.threads} threads, device cpu, max |prob diff| = {max_diff:.2e}\n")
    print(f"| {'method':<58} | {'ex/s':>8} | {'vs pipeline':>11} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 13}|")
    for name, rate in results:
        print(f"| {name:<58} | {rate:8.1f} | {rate / base:10.2f}x |")


if __name__ == "__main__":
    main()
