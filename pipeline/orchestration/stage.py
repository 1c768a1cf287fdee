"""What every `python -m stages.<name>` shares: params loading and validation first, then one clear
message and exit status 2 for a user's mistake (a PipelineError), never a traceback. A stage that
trains runs as params `processes` processes (pipeline.distributed): its entry point launches them."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable

from pipeline import distributed
from pipeline.errors import PipelineError
from pipeline.params.config import PARAMS_FILE, Params, load_params

log = logging.getLogger("pipeline")


def peak_memory() -> str:
    """This process's peak resident memory (and the GPU's peak allocation where a stage used one)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    words = f"peak memory {rss:,.0f} MB"
    torch = sys.modules.get("torch")  # a stage that never imported torch used no GPU: importing it costs seconds
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        words += f", GPU {torch.cuda.max_memory_allocated() / 2**20:,.0f} MB"
    return words


def stage(fn: Callable[[Params, list[str]], None] | None = None, *, data_parallel: bool = False):
    """Wrap a stage body: load and validate params first, turn PipelineError into one message + exit 2.
    `data_parallel`: with params `processes` above 1 the entry point launches that many processes of the
    stage (rank 0 logs at INFO, the others warnings only)."""
    if fn is None:
        return functools.partial(stage, data_parallel=data_parallel)

    @functools.wraps(fn)
    def main(argv: list[str] | None = None) -> None:
        quiet = not distributed.is_main()
        logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
            n = distributed.processes(params) if data_parallel else 1
            if n > 1 and distributed.world_size() == 1:  # the launcher: the processes do the work
                distributed.check_devices(n)
                code = distributed.launch(spec.name if spec else fn.__module__, args, n)
                if code:
                    sys.exit(code)
                return
            if data_parallel:
                distributed.setup()
            fn(params, args)
        except PipelineError as exc:
            where = f" (process {distributed.rank()} of {distributed.world_size()})" if quiet else ""
            print(f"error{where}: {exc}", file=sys.stderr)
            sys.exit(2)
        finally:
            if data_parallel:
                distributed.teardown()
        if not quiet:
            log.info("stage %s %s finished in %.1f s, %s", name, " ".join(args), time.perf_counter() - start,
                     peak_memory())

    return main
