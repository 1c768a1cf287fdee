"""Data-parallel stages: params `processes` runs a training stage (and the teacher_logits pass) as N
processes under torch.distributed, one per GPU (NCCL) or N CPU processes (gloo).

The stage's own entry point is the launcher: `python -m stages.<name>` with `processes: N` starts N copies
of itself with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), waits for
them, and stops the others as soon as one fails. A stage started by torchrun itself (`torchrun
--nproc-per-node 8 -m stages.distill ...`, or over several nodes) runs the same way. Every process builds
the same job from the same params and inputs; the Trainer splits each global batch over them. Rank 0
alone writes artifacts, reports and checkpoints (`pipeline.artifacts.atomic_path` discards what the others
write), so the workspace ends as a one-process run leaves it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.params.config import BaseParams

log = logging.getLogger(__name__)

ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def world_size() -> int:
    """How many processes run this stage (1 outside a data-parallel run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the stage's outputs: rank 0, or the only process."""
    return rank() == 0


def processes(params: BaseParams) -> int:
    """Params `processes` resolved on this machine: auto is one per CUDA GPU (1 without one)."""
    if params.processes != "auto":
        return params.processes
    import torch

    return max(torch.cuda.device_count(), 1)


def check_devices(n: int) -> None:
    """N processes need N GPUs where the stage runs on GPUs; on CPUs they share the cores."""
    import torch

    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise ConfigError(f"processes: {n}, but this machine has {torch.cuda.device_count()} GPU(s): one process "
                          "per GPU (set processes to at most that, or auto)")


def batch_passes(batch_size: int, where: str, device_batch: int | None = None) -> tuple[int, int]:
    """A global training batch as (rows per forward-backward pass, passes per optimizer step) for each
    process: split evenly over the processes (so that N processes follow a one-process recipe), and each
    process's share accumulated over the fewest passes of at most `device_batch` rows (params
    `device_batch`, set by the accelerator's memory) that divide it evenly."""
    n = world_size()
    if batch_size % n:
        raise ConfigError(f"{where}: batch_size {batch_size} does not split evenly over {n} processes (params "
                          f"`processes`); make it a multiple of {n}")
    share = batch_size // n
    passes = next(k for k in range(-(-share // (device_batch or share)), share + 1) if share % k == 0)
    return share // passes, passes


def setup() -> None:
    """Before a stage that trains or infers computes anything: on CUDA, TF32 for the float32 matrix products
    it still runs (bf16 autocast covers the rest); in a launched process, join the process group (NCCL on
    GPUs, gloo on CPUs) and take its GPU."""
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size() == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    """Wait until every process gets here (a no-op in a one-process run)."""
    if world_size() > 1:
        import torch.distributed as dist

        setup()
        dist.barrier()


def teardown() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """A launched process ends when its launcher does (Linux), even if the launcher is killed outright."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def launch(module: str, args: list[str], n: int) -> int:
    """Run `python -m module args` as `n` processes of one process group on this machine; return the first
    failure's exit status (the others are stopped then), or 0. CPU processes share the cores evenly."""
    import torch

    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(WORLD_SIZE=str(n), LOCAL_WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    if not torch.cuda.is_available():
        env.setdefault("OMP_NUM_THREADS", str(max((os.cpu_count() or 1) // n, 1)))
    log.info("%s %s: %d processes (%s)", module, " ".join(args), n,
             "one per GPU" if torch.cuda.is_available() else f"{env['OMP_NUM_THREADS']} CPU thread(s) each")
    procs = [subprocess.Popen([sys.executable, "-m", module, *args], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              preexec_fn=_die_with_parent) for r in range(n)]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                r, code = failed[0]
                if code != 2:  # 2: the process said what was wrong (a PipelineError)
                    print(f"error: process {r} of {n} ({module} {' '.join(args)}) failed with exit status {code}",
                          file=sys.stderr)
                return code if code > 0 else 1
            if all(c == 0 for c in codes):
                return 0
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
