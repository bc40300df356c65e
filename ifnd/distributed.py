"""Thin helpers over ``torch.distributed`` that are no-ops in a single process."""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for this rank's part (an all-reduce, then
    this rank's rows: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        return gather(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[rank() * ctx.rows:(rank() + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (the same shape on every rank) of every rank along dim 0, differentiably.

    The backward pass sums each part's gradient over ranks, so with DDP's gradient averaging a
    loss that is a mean over each rank's anchors matches the single-process loss on the global batch.
    """
    return _GatherWithGrad.apply(x) if is_distributed() else x


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of every rank along dim 0, without gradient."""
    if not is_distributed():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def init_from_environment() -> None:
    """Join the process group that ``torchrun`` / SLURM set up (``WORLD_SIZE`` > 1), once."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_distributed():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def average_gradients(parameters) -> None:
    """All-reduce the mean gradient over ranks in one flat buffer (what DDP does, unbucketed)."""
    if not is_distributed():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@torch.no_grad()
def gather_rows(x: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble rows that ranks computed for contiguous shards of ``total`` rows (see ``shard``)."""
    if not is_distributed():
        return x
    per_rank = -(-total // world_size())
    padded = torch.zeros(per_rank, *x.shape[1:], dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    return gather(padded)[:total]


def shard(total: int) -> slice:
    """This rank's contiguous share of ``total`` rows."""
    per_rank = -(-total // world_size())
    return slice(rank() * per_rank, min(total, (rank() + 1) * per_rank))
