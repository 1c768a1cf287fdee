"""Distillation loss terms as small pure functions over tensors. Methods (pipeline/methods/) name
them, and a recipe's loss is the weighted sum of its named terms (pipeline.methods.recipes).

Conventions: `student`/`teacher` are logits of shape (batch, num_labels); `labels` are class ids
with -1 for rows that have no gold label (augmented rows), which hard-label terms ignore. A regression
model has one output and float labels (NaN: none); hard_loss and soft_loss serve both kinds.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from pipeline import distributed

IGNORE = -1


def fp32(fn):
    """Compute a loss in float32 with autocast off. Under bf16 mixed precision its inputs may be bf16,
    and softmaxes, KL terms and squared errors lose too much there (a KL can even come out negative)."""
    def cast(value):
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device, enabled=False):
            return fn(*map(cast, args), **{k: cast(v) for k, v in kwargs.items()})
    return wrapper


def split_batch() -> bool:
    """Whether this forward pass trains on one process's share of a global batch (pipeline.distributed)."""
    return distributed.world_size() > 1 and torch.is_grad_enabled()


def shared_mean(total: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """A term summed over the rows this process keeps (`kept`: a mask), divided so that DDP's average of the
    processes' terms is the mean over the rows all processes keep (each process's own count would give the
    labelled rows of a process with few of them more weight). Every process must call it: a collective."""
    import torch.distributed as dist

    count = kept.sum().to(total.dtype)
    dist.all_reduce(count)
    return total / (count.clamp_min(1.0) / distributed.world_size())


@fp32
def hard_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with gold labels, averaged over labelled rows; 0 when the batch has none."""
    mask = labels != IGNORE
    if split_batch():
        return shared_mean(F.cross_entropy(logits[mask], labels[mask], reduction="sum"), mask)
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[mask], labels[mask])


@fp32
def hard_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gold-label term: CE over the labelled rows for a classifier; for a regressor (one output), MSE
    to the score over the rows that have one (NaN: none). 0 when the batch has none."""
    if logits.shape[-1] > 1:
        return hard_ce(logits, labels)
    keep = ~torch.isnan(labels)
    if split_batch():
        return shared_mean(F.mse_loss(logits[keep, 0], labels[keep], reduction="sum"), keep)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.mse_loss(logits[keep, 0], labels[keep])


@fp32
def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The teacher-output term: soft CE at T for a classifier; for a regressor (one output), MSE to the
    teacher's score (a score has no temperature)."""
    if student.shape[-1] > 1:
        return soft_ce(student, teacher, temperature)
    return F.mse_loss(student, teacher)


@fp32
def logit_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Tang et al. 2019, eq. 2: ||z_teacher - z_student||^2, summed over classes, averaged over rows."""
    return (student - teacher.to(student.dtype)).pow(2).sum(-1).mean()


# ------------------------------------------------------------------ Transformer students
# Conventions below: hidden states are (batch, seq, width); attention scores are pre-softmax
# (batch, heads, seq, seq); `mask` is the attention mask (batch, seq), 1 for real tokens, 0 for padding.


@fp32
def soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft-target cross-entropy -sum p_T(teacher) * log p_T(student), averaged over rows, times T^2.

    The T^2 factor (Hinton et al. 2015) keeps the gradient scale independent of T, so the weight of
    this term means the same at any temperature. With T = 1 it is TinyBERT's prediction-layer loss."""
    t = float(temperature)
    target = F.softmax(teacher.to(student.dtype) / t, dim=-1)
    return -(target * F.log_softmax(student / t, dim=-1)).sum(-1).mean() * t * t


@fp32
def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
               projection: torch.nn.Module | None = None) -> torch.Tensor:
    """TinyBERT's hidden-state (and embedding) loss: MSE(student @ W, teacher) over real tokens only.

    `projection` maps the student width to the teacher's (a learned nn.Linear when widths differ);
    padded positions contribute nothing, and the mean is over real tokens times the teacher width."""
    if projection is not None:
        student = projection(student)
    if student.shape != teacher.shape:
        raise ValueError(f"hidden_mse: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}; "
                         "a projection to the teacher width is needed")
    keep = mask.to(student.dtype).unsqueeze(-1)
    squared = (student - teacher.to(student.dtype)).pow(2) * keep
    return squared.sum() / (keep.sum() * student.shape[-1]).clamp_min(1.0)


def pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """(batch, 1, seq, seq) mask of query-key pairs where both tokens are real."""
    m = mask.to(torch.bool)
    return (m[:, None, :, None] & m[:, None, None, :])


@fp32
def attention_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                  seen: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's attention loss: MSE between pre-softmax attention scores, heads averaged.

    Positions whose query or key is padding are zeroed in both (TinyBERT zeroes the -inf-masked
    entries), and the mean is taken over the real query-key pairs only, so padding never counts; so are
    the pairs outside `seen` (boolean, (batch, 1, seq, seq), the same for every head), those the teacher's layer
    does not attend over (a local layer's window)."""
    if student.shape != teacher.shape:
        raise ValueError(f"attention_mse: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}; "
                         "student and teacher need the same number of heads")
    keep = pair_mask(mask)
    if seen is not None:
        keep = keep & seen.to(torch.bool).reshape(seen.shape[0], 1, *seen.shape[-2:])
    keep = keep.to(student.dtype)
    squared = (student * keep - teacher.to(student.dtype) * keep).pow(2)
    return squared.sum() / (keep.sum() * student.shape[1]).clamp_min(1.0)


@fp32
def cosine_hidden(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's cosine loss: mean of 1 - cos(student_i, teacher_i) over real tokens."""
    keep = mask.to(torch.bool)
    cos = F.cosine_similarity(student[keep], teacher.to(student.dtype)[keep], dim=-1)
    return (1.0 - cos).mean() if cos.numel() else student.sum() * 0.0


def mask_tokens(input_ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float = 0.15, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's MLM corruption: choose `probability` of the non-special tokens; of those 80% become
    [MASK], 10% a random token, 10% stay. Returns (corrupted ids, labels with -100 where not chosen)."""
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = (draw < probability) & ~special.to(torch.bool)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    how = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    corrupted = input_ids.clone()
    corrupted[chosen & (how < 0.8)] = mask_id
    randomised = chosen & (how >= 0.8) & (how < 0.9)
    corrupted[randomised] = torch.randint(vocab_size, input_ids.shape, generator=generator,
                                          device=input_ids.device)[randomised]
    return corrupted, labels


@fp32
def masked_lm(logits: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
    """BERT's masked-LM loss over the chosen positions (labels -100 elsewhere); 0 when none is chosen."""
    chosen = mlm_labels != -100
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[chosen], mlm_labels[chosen])


# ------------------------------------------------------------------ MiniLMv2
def relation_heads(states: torch.Tensor, heads: int) -> torch.Tensor:
    """Split (batch, seq, width) vectors (a layer's queries, keys or values with its attention heads
    concatenated) into `heads` relation heads: (batch, heads, seq, width / heads)."""
    b, s, width = states.shape
    if width % heads:
        raise ValueError(f"width {width} is not a multiple of {heads} relation heads")
    return states.view(b, s, heads, width // heads).transpose(1, 2)


def relation_log_probs(states: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """MiniLMv2's self-attention relation: log softmax(A A^T / sqrt(d_r)) per relation head, over real
    keys only (padded keys get probability 0). Shape (batch, heads, seq, seq); each real query's row
    of the exp() sums to 1 (row-stochastic)."""
    a = relation_heads(states, heads)
    scores = a @ a.transpose(-1, -2) / a.shape[-1] ** 0.5
    keys = mask.to(torch.bool)[:, None, None, :]
    scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
    return F.log_softmax(scores, dim=-1)


@fp32
def relation_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """KL(teacher relation || student relation) for one kind of vectors (Q, K or V), summed over keys
    and averaged over relation heads and real queries. Student and teacher widths may differ: both are
    split into the same number of relation heads, each relation matrix is seq x seq."""
    t_log = relation_log_probs(teacher.to(student.dtype), heads, mask)
    s_log = relation_log_probs(student, heads, mask)
    keep = pair_mask(mask)  # padded keys have p_T = 0; padded queries are dropped
    kl = (t_log.exp() * (t_log - s_log)).masked_fill(~keep, 0.0).sum(-1)  # (batch, heads, seq)
    queries = mask.to(student.dtype)[:, None, :]
    return (kl * queries).sum() / (queries.sum() * heads).clamp_min(1.0)


# ------------------------------------------------------------------ LRC-BERT
def angular_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LRC-BERT's g(x, y) = 1 - cos(x, y) in [0, 2] between the rows of x (n, d) and of y (m, d): (n, m).

    Each vector is divided by its norm (clamped away from zero) before the dot product — the whole
    norm, not a sum with an epsilon outside the division."""
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return 1.0 - x @ y.transpose(0, 1)


def flat_states(states: torch.Tensor, mask: torch.Tensor, length: int | None = None) -> torch.Tensor:
    """One vector per example: its (seq, width) layer output with padded positions zeroed, flattened
    (zero-padded to `length` positions when given, which leaves every cosine unchanged)."""
    states = states * mask.to(states.dtype).unsqueeze(-1)
    if length is not None and states.shape[1] < length:
        states = F.pad(states, (0, 0, 0, length - states.shape[1]))
    return states.flatten(1)


@fp32
def cos_nce(student: torch.Tensor, positives: torch.Tensor, pool: torch.Tensor, negatives: torch.Tensor,
            temperature: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """COS-NCE (Fu et al. 2021, arXiv 2012.07335), one layer: for each example i, with g the angular
    distance, the NCE loss of picking the teacher's representation of i among it and K negatives,
        -log( exp((2 - g(s_i, t_i)) / tau) / (exp((2 - g(s_i, t_i)) / tau) + sum_k exp((2 - g(s_i, n_ik)) / tau)) ).
    It falls as the student's (projected) representation turns toward the teacher's for the same
    example and away from the negatives; its minimum is at g = 0 to the positive and g = 2 (opposite)
    to every negative.

    student, positives: (batch, d); pool: (n, d) teacher representations negatives are drawn from (the
    batch's own, or a memory bank); negatives: (batch, K) indices into pool. Returns the mean over the
    batch (a scalar, so backward never sees a vector). `valid` (batch, K), when given, drops the negatives
    it marks False (near-copies of the example: see same_example)."""
    pos = 2.0 - angular_distance(student, positives.to(student.dtype)).diagonal()  # (batch,)
    neg = (2.0 - angular_distance(student, pool.to(student.dtype))).gather(1, negatives)  # (batch, K)
    if valid is not None:
        neg = neg.masked_fill(~valid, float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1) / temperature
    return -F.log_softmax(logits, dim=1)[:, 0].mean()


def in_batch_negatives(batch: int, k: int | None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, K) indices of each example's negatives among the other examples of the batch: all
    batch - 1 of them, or K drawn at random per example (K capped at batch - 1)."""
    rows = torch.arange(batch)
    others = torch.stack([torch.cat([rows[:i], rows[i + 1:]]) for i in range(batch)]) if batch > 1 \
        else torch.empty(batch, 0, dtype=torch.long)
    if k is not None and k < batch - 1:
        order = torch.rand(others.shape, generator=generator).argsort(dim=1)[:, :k]
        others = others.gather(1, order)
    return others


def same_example(ids: torch.Tensor, pool_ids: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """(batch, K): whether each negative is a near-copy of its example, i.e. shares an id with it. `ids`
    (batch, n_ids) holds each example's ids (its source row, its text's content key), `pool_ids`
    (n, n_ids) those of the pool negatives come from; an augmented row, its source row and a repeated
    text are near-copies."""
    return (pool_ids[negatives] == ids[:, None, :]).any(-1)


def perturbation(grad: torch.Tensor, mask: torch.Tensor, epsilon: float) -> torch.Tensor:
    """LRC-BERT's gradient perturbation of the embedding-layer output: epsilon * g / ||g|| per example,
    g the gradient of the loss with respect to that output (padded positions excluded). Each example's
    perturbation has norm epsilon (0 where the gradient vanishes)."""
    g = grad * mask.to(grad.dtype).unsqueeze(-1)
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    return (epsilon * g / norm).detach()
