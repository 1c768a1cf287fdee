"""What every `python -m stages.<name>` shares: artifact paths, params loading, error handling."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.config import PARAMS_FILE, Params, load_params
from pipeline.errors import ConfigError, PipelineError

# Artifact locations, relative to the repository root (dvc.yaml names the same paths).
PREPARED = Path("data/prepared")
AUGMENTED = Path("data/augmented")
TEACHER_LOGITS = Path("data/teacher_logits")
TEACHER = Path("models/teacher")
STUDENTS = Path("models/students")
GENERAL = Path("models/general")  # general_distill students, one folder per objective
INTERMEDIATE = Path("models/intermediate")  # step-1 students of two-step task distillation
REPORTS = Path("reports")
EXPORTS = Path("exports")  # served models: HF/BiLSTM folder, ONNX fp32 + int8, model card
CHECKPOINTS = Path("checkpoints")  # resumable state of long stages (scratch, not a DVC output)

log = logging.getLogger("pipeline")


def only_argument(args: list[str], module: str, what: str, label: str, choices) -> str:
    """The one argument of a foreach stage (a student or objective name), or a usage error listing the choices."""
    if len(args) != 1:
        raise ConfigError(f"usage: python -m stages.{module} <{what}>; {label}: {', '.join(choices)}")
    return args[0]


def student_dir(name: str) -> Path:
    return STUDENTS / name


def stage(fn: Callable[[Params, list[str]], None]) -> Callable[[list[str] | None], None]:
    """Wrap a stage body: load and validate params first, turn PipelineError into one message + exit 2."""

    @functools.wraps(fn)
    def main(argv: list[str] | None = None) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        for noisy in ("httpx", "urllib3", "filelock", "datasets", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        args = sys.argv[1:] if argv is None else argv
        module = sys.modules.get(fn.__module__)
        spec = getattr(module, "__spec__", None)
        name = (spec.name if spec else fn.__module__).rsplit(".", 1)[-1]
        start = time.perf_counter()
        try:
            params = load_params(os.environ.get("DISTILL_PARAMS", PARAMS_FILE))
            fn(params, args)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        log.info("stage %s finished in %.1f s", name, time.perf_counter() - start)

    return main
