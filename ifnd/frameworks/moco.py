"""MoCo v2 (He et al., 2020; Chen et al., 2020d): momentum key encoder and a queue of keys.

The model of the paper's ImageNet experiments (Sec. 4.1, App. C; Tables 1-4, 8): query encoder
``f_q``, key encoder ``f_k`` updated as ``theta_k <- m theta_k + (1 - m) theta_q`` (m = 0.999)
after every optimiser step, and a queue of ``K`` = 65536 keys, temperature 0.2.

What this implementation adds to MoCo's code, so that every detector works on queue entries through
the one masked kernel (``ifnd.losses``):

* The queue also stores each key's **sample index** (``queue_index``; -1 for slots never filled).
  Pseudo labels (IFND), true labels (SupCon oracle) and thresholds (GloFND) therefore apply to the
  queue exactly as to in-batch candidates.
* ``ContrastiveBatch``: anchors are the queries ``q`` (this process's B), candidates are
  ``[keys of this batch (B), queue (K)]``. The positive is the anchor's own key; the other keys of
  the batch are not valid candidates (MoCo's logits are ``[l_pos, l_neg(queue)]``: the batch's keys
  become negatives only once enqueued). Empty slots are not valid, nor are queue entries of the
  anchor's own sample (a stale key of the same image; it happens only when the queue spans more
  than an epoch, e.g. K = 65536 on CIFAR's 50k images, and would be the falsest negative of all).
* Enqueue happens in ``after_step`` (after the loss used the queue), with the keys of every rank;
  the queue is a ring buffer: ``K`` must be a multiple of the global batch, as in MoCo's code.

Shuffling BN (MoCo Sec. 3.3): MoCo runs the key encoder on a random permutation of the global batch
split over 8 GPUs, so a query and its key never share BatchNorm statistics. ``bn_splits`` emulates
that number of GPUs: each process runs its ``bn_splits / world_size`` query groups (in data order)
and key groups (after a global shuffle, MoCo's ``batch_shuffle_ddp`` / ``batch_unshuffle_ddp``)
through the encoders separately. With one process and ``bn_splits = 8`` that is MoCo's 8-GPU
setting on one device; with 8 processes each process has one group, as MoCo. The shuffle comes from
a generator seeded by (seed, step), so a resumed run replays it.

Clustering features (``embed``) come from the key encoder, as in PCL's code on which IFND builds.
"""
from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ifnd.distributed import gather, is_distributed, rank, world_size
from ifnd.falseneg.base import ContrastiveBatch
from ifnd.frameworks.base import Framework, FrameworkSpec
from ifnd.pairs import Pairs
from ifnd.models import PROJECTION_DIM, Encoder


def queue_size_problem(queue_size: int, batch_size: int) -> str | None:
    """Why a queue of ``queue_size`` cannot take whole global batches of ``batch_size``, or None."""
    if batch_size <= queue_size and queue_size % batch_size == 0:
        return None
    fix = max(batch_size, queue_size - queue_size % batch_size)
    return (f"queue size {queue_size} is not a multiple of the batch size {batch_size}: the queue is a ring "
            f"buffer that replaces whole (global) batches of keys, as in MoCo's code; use --queue-size {fix}")


class MoCo(Framework):
    def __init__(self, arch: str, cifar_stem: bool = False, momentum: float = 0.999, queue_size: int = 65536,
                 bn_splits: int = 1, seed: int = 0, dim: int = PROJECTION_DIM):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"moco_momentum={momentum} must be in [0, 1) (MoCo: 0.999)")
        if queue_size < 1 or bn_splits < 1:
            raise ValueError(f"queue_size={queue_size} and bn_splits={bn_splits} must be positive")
        self.encoder = Encoder(arch, cifar_stem)
        self.key_encoder = copy.deepcopy(self.encoder)
        for p in self.key_encoder.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.bn_splits = bn_splits
        self.seed = seed
        self.register_buffer("queue", torch.zeros(queue_size, dim))
        self.register_buffer("queue_index", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Key-encoder projection (PCL's ``is_eval`` features, what IFND's code clusters)."""
        return self.key_encoder(x)

    # -- BatchNorm groups -------------------------------------------------------------------
    def _local_splits(self, batch: int) -> int:
        splits = max(1, self.bn_splits // world_size())
        if batch % splits:
            raise ValueError(f"moco_bn_splits={self.bn_splits} over {world_size()} process(es) gives {splits} "
                             f"BatchNorm groups per process, which do not divide its batch of {batch}: choose "
                             "--moco-bn-splits so that the per-process batch splits evenly")
        return splits

    @staticmethod
    def _grouped(net, x: torch.Tensor, splits: int) -> torch.Tensor:
        return net(x) if splits == 1 else torch.cat([net(part) for part in x.chunk(splits)])

    @torch.no_grad()
    def _shuffle(self, n_global: int, device) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        perm = torch.randperm(n_global, generator=gen).to(device)
        if is_distributed():  # identical already; broadcast as MoCo does, in case seeds ever differ
            dist.broadcast(perm, src=0)
        return perm

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """Unit keys of the local key views, computed on shuffled BatchNorm groups and unshuffled."""
        local = x.shape[0]
        splits = self._local_splits(local)
        x_all = gather(x)                                   # MoCo's batch_shuffle_ddp
        perm = self._shuffle(x_all.shape[0], x.device)
        mine = perm.view(world_size(), local)[rank()]
        k = F.normalize(self._grouped(self.key_encoder, x_all[mine], splits), dim=1)
        k_all = gather(k)                                   # MoCo's batch_unshuffle_ddp
        unshuffled = torch.empty_like(k_all)
        unshuffled[perm] = k_all
        return unshuffled[rank() * local:(rank() + 1) * local]

    # -- loss inputs ------------------------------------------------------------------------
    def contrastive_batch(self, views: list[torch.Tensor], index: torch.Tensor, temperature: float) -> ContrastiveBatch:
        x_q, x_k = views[0], views[1]
        q = F.normalize(self._grouped(self.encoder, x_q, self._local_splits(x_q.shape[0])), dim=1)
        k = self.keys(x_k)
        b = q.shape[0]
        candidates = torch.cat([k, self.queue.detach()])
        logits = q @ candidates.T / temperature
        candidate_index = torch.cat([index, self.queue_index])
        own_key = torch.eye(b, dtype=torch.bool, device=q.device)
        filled = (self.queue_index >= 0)[None, :] & (self.queue_index[None, :] != index[:, None])
        rows = torch.arange(b, device=q.device)
        positive = Pairs(torch.zeros_like(rows), rows, rows)
        valid = torch.cat([own_key, filled], dim=1)
        if self.training:
            self._pending = (k.detach(), index.detach())
        return ContrastiveBatch(logits, index, candidate_index, positive, valid, temperature, anchor_embedding=q)

    # -- after the optimiser step -----------------------------------------------------------
    @torch.no_grad()
    def momentum_update(self) -> None:
        """``theta_k <- m theta_k + (1 - m) theta_q`` over the parameters (BN buffers stay the key encoder's)."""
        key = [p for p in self.key_encoder.parameters()]
        query = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_mul_(key, self.momentum)
        torch._foreach_add_(key, query, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, index: torch.Tensor) -> None:
        """Replace the oldest ``len(keys)`` entries (keys of every rank, in rank order)."""
        n = keys.shape[0]
        problem = queue_size_problem(self.queue_size, n)
        if problem:
            raise ValueError(problem)
        ptr = int(self.queue_ptr)
        self.queue[ptr:ptr + n] = keys.to(self.queue.dtype)
        self.queue_index[ptr:ptr + n] = index
        self.queue_ptr.fill_((ptr + n) % self.queue_size)

    @torch.no_grad()
    def after_step(self) -> None:
        self.momentum_update()
        if self._pending is not None:
            keys, index = self._pending
            self.enqueue(gather(keys), gather(index))
            self._pending = None
        self.steps += 1


def config_problem(cfg) -> str | None:
    if not 0.0 <= cfg.moco_momentum < 1.0:
        return f"moco_momentum={cfg.moco_momentum} must be in [0, 1) (MoCo: 0.999)"
    if cfg.moco_bn_splits < 1 or cfg.batch_size % cfg.moco_bn_splits:
        return (f"moco_bn_splits={cfg.moco_bn_splits} must be >= 1 and divide batch_size={cfg.batch_size} (each "
                "group is one emulated GPU of MoCo's shuffled BN)")
    return queue_size_problem(cfg.queue_size, cfg.batch_size)


SPEC = FrameworkSpec(
    "moco", lambda cfg: MoCo(cfg.arch, cfg.cifar_stem, momentum=cfg.moco_momentum, queue_size=cfg.queue_size,
                             bn_splits=cfg.moco_bn_splits, seed=cfg.seed),
    "MoCo v2: queries against a momentum encoder's keys and a queue of past keys",
    blur=True, step_cost=4 / 3, fields=("moco_momentum", "queue_size", "moco_bn_splits"), check=config_problem)
