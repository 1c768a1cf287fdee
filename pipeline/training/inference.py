"""Inference with Hugging Face sequence classifiers: the device and precision a stage computes in, and
batched, length-bucketed logits (resumable over chunks for the long teacher pass)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline import distributed
from pipeline.data.batches import encode, length_buckets, pad_batch
from pipeline.errors import ConfigError
from pipeline.training.checkpoint import CheckpointDir


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def attention_for(dev: torch.device) -> str:
    """The attention implementation a stage computes with: PyTorch's SDPA kernels on CUDA; plain matmul +
    softmax ("eager") on CPU, where for the short sequences of sentence tasks SDPA is slower (its CPU
    flash-attention backward most of all: training ran 1.36x faster eager, inference 1.2x, on 2 cores).
    The exports do not depend on it: they trace freshly loaded models."""
    return "sdpa" if dev.type == "cuda" else "eager"


def use_attention_for(model: torch.nn.Module, dev: torch.device | None = None) -> None:
    """Set every Hugging Face model inside `model` (a recipe's student and teacher too) to attention_for."""
    from transformers import PreTrainedModel

    impl = attention_for(dev or device())
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.config._attn_implementation != impl:
            try:
                module.set_attn_implementation(impl)
            except (ValueError, ImportError):  # a family without SDPA (DeBERTa) keeps its own attention
                pass


def bf16_linears(model: torch.nn.Module) -> None:
    """Store the weights of every Linear in bf16, for a model that only infers under bf16 autocast: the
    same numbers autocast computes (it rounds each weight to bf16 on every call; this does once)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)


def bf16_native(dev: torch.device) -> bool:
    """Whether `dev` multiplies bf16 matrices natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16
    or AMX (elsewhere bf16 is emulated and slower than fp32)."""
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    caps = torch.cpu.get_capabilities() if dev.type == "cpu" else {}
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def use_bf16(precision: str, dev: torch.device | None = None) -> bool:
    """Whether a stage computes in bf16 mixed precision (params `precision`: auto, fp32 or bf16)."""
    dev = dev or device()
    if precision == "auto":
        return bf16_native(dev)
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"precision: bf16, but {torch.cuda.get_device_name(dev)} has no bf16 (use auto or fp32)")
    return precision == "bf16"


@torch.inference_mode()
def classifier_logits(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None,
                      batch_size: int = 128, max_length: int = 128, progress: bool = True,
                      desc: str = "inference", bf16: bool = False) -> np.ndarray:
    """Logits for every example, in input order: one pass, length-sorted batches, dynamic padding
    (under bf16 autocast when `bf16`; the logits are returned as float32 either way)."""
    model.eval()
    dev = next(model.parameters()).device
    enc = encode(tokenizer, texts, pairs, max_length)
    buckets = length_buckets([len(ids) for ids in enc["input_ids"]], batch_size)
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    # one autocast region for every batch: it casts each weight to bf16 once, not once per batch
    with tqdm(total=len(texts), desc=desc, unit="ex", disable=not progress, mininterval=2) as bar, \
            torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        for idx in buckets:
            batch = pad_batch(tokenizer, enc, idx)
            logits = model(**{k: torch.from_numpy(v).to(dev) for k, v in batch.items()}).logits
            out[idx] = logits.float().cpu().numpy()
            bar.update(len(idx))
    return out


def content_key(text: str, pair: str | None) -> str:
    """Stable key of an example's content: students look teacher outputs up by it."""
    return hashlib.sha1(f"{text}\x1f{pair or ''}".encode("utf-8")).hexdigest()


CHUNK_ROWS = 16384


def resumable_logits(model, tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, batch_size: int,
                     max_length: int, checkpoints: CheckpointDir, desc: str = "inference",
                     bf16: bool = False) -> np.ndarray | None:
    """classifier_logits over chunks of CHUNK_ROWS rows, each saved under `checkpoints` when done,
    so an interrupted pass resumes at the first missing chunk. In a data-parallel stage each process
    computes its contiguous share of every chunk, and rank 0 joins the shares in row order and returns
    the logits (the other processes return None)."""
    n, rank, main = distributed.world_size(), distributed.rank(), distributed.is_main()
    if main:
        checkpoints.start()
    distributed.barrier()
    out = np.empty((len(texts), model.config.num_labels), dtype=np.float32) if main else None
    with tqdm(total=len(texts), desc=desc, unit="ex", mininterval=2, disable=not main) as bar:
        for k, start in enumerate(range(0, len(texts), CHUNK_ROWS)):
            end = min(start + CHUNK_ROWS, len(texts))
            part = checkpoints.folder / f"part-{k:05d}.npy"
            if part.is_file():
                if main:
                    out[start:end] = np.load(part)
                bar.update(end - start)
                continue
            bounds = np.linspace(start, end, n + 1).astype(int)  # process r: rows bounds[r]..bounds[r+1]
            lo, hi = bounds[rank], bounds[rank + 1]
            share = classifier_logits(model, tokenizer, texts[lo:hi], pairs[lo:hi] if pairs is not None else None,
                                      batch_size=batch_size, max_length=max_length, progress=False, bf16=bf16)
            if n > 1:  # the shares meet in the checkpoint folder
                _save(checkpoints.folder / f"part-{k:05d}.share-{rank}-of-{n}.npy", share)
                distributed.barrier()
                if main:
                    shares = [checkpoints.folder / f"part-{k:05d}.share-{r}-of-{n}.npy" for r in range(n)]
                    share = np.concatenate([np.load(f) for f in shares])
                    for f in shares:
                        f.unlink()
            if main:
                out[start:end] = share
                _save(part, share)
            bar.update(end - start)
    return out


def _save(path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
