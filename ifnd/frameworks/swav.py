"""SwAV (Caron et al., 2020) with multi-crop, and IFND on SwAV (paper App. F, Table 8).

Our own code after the ideas of the official implementation (facebookresearch/swav, ``main_swav.py``):

* **Multi-crop** views: ``crop_counts[i]`` crops of ``crop_sizes[i]`` pixels with random-resized-crop
  scale in ``[crop_min_scale[i], crop_max_scale[i]]``; App. F uses 2x160 + 4x96 on ImageNet, scales
  (0.14, 1) and (0.05, 0.14) as SwAV. For CIFAR-sized images the sizes scale down (default 2x32 +
  4x16). SwAV's colour distortion is the strong one (jitter 0.8, 0.8, 0.8, 0.2 with p=0.8, grayscale
  p=0.2), blur with the framework's ``blur_p``. The backbone runs once per resolution, the head
  once on all crops (SwAV's multi-resolution forward).
* **Prototypes**: a bias-free linear layer on the unit embedding, re-normalised to unit rows
  before every step; kept out of the gradient (``grad`` None, so SGD neither moves nor decays them)
  for the first ``freeze_prototypes_iters`` steps.
* **Codes** of the crops used for assignment (the two large ones) by Sinkhorn-Knopp (``epsilon``
  0.05, 3 iterations) on ``exp(scores / epsilon)``, over the batch of every process plus, once the
  queue of past embeddings is full, the queue. The queue (``queue_size`` embeddings per assignment
  crop, split over processes) starts at epoch ``queue_start_epoch`` (``set_epoch`` is called by the
  trainer before each epoch) and is a buffer, so checkpoints hold it.
* **Swapped prediction**: each assignment crop's code is predicted from every other crop with
  ``softmax(scores / T)``; loss averaged over the predicting crops and the assignment crops.

IFND on SwAV (App. F: "when computing codes, we use an average feature embedding to represent the
features with an identical pseudo label"): before Sinkhorn, each sample's embedding is replaced by
the mean of the embeddings of the batch samples (of every process) that share its accepted pseudo
label, re-normalised to the unit sphere like every other embedding the prototypes score. Unaccepted
samples keep a label of their own, so they keep their own embedding. With several clustering
levels (hierarchical k), codes are computed per level and the swapped-prediction loss is averaged
over the levels, as IFND's loss is averaged over levels (Sec. 3.2). Queue entries are not averaged.
Any label-based detector works (``ifnd``; ``true_labels`` gives a supervised oracle); detectors
without labels (GloFND) do not apply.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ifnd import augment as aug
from ifnd.distributed import gather, is_distributed, rank, world_size
from ifnd.falseneg.base import Detector, NoDetector
from ifnd.frameworks.base import Framework, FrameworkSpec
from ifnd.models import PROJECTION_DIM, Encoder

SWAV_JITTER = (0.8, 0.8, 0.8, 0.2)  # SwAV's get_color_distortion(s=1.0)
ASSIGNMENT_CROPS = (0, 1)           # SwAV's crops_for_assign: the two large crops


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(x)
    return x


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Equipartitioned soft assignment of ``scores`` ``[B, K]`` (this process's rows) to K prototypes.

    Returns the transport plan ``Q`` ``[B, K]`` over the global batch: every sample's row sums to
    ``1 / B_global`` exactly and every prototype's column, summed over processes, to ``1 / K``
    approximately (exactly in the limit of iterations). SwAV's codes are ``B_global * Q`` (rows sum
    to 1); see ``codes``.
    """
    scores = scores.float()
    # exp((s - max) / eps): the shift cancels in the normalisations and avoids overflow at small eps.
    shift = _all_reduce_max(scores.max())
    q = torch.exp((scores - shift) / epsilon).T  # [K, B] as in SwAV's notation
    k, b = q.shape
    b_global = b * world_size()
    q /= _all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True)) * k  # each prototype: total weight 1/K
        q /= q.sum(dim=0, keepdim=True) * b_global             # each sample: total weight 1/B
    return q.T


def _all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


@torch.no_grad()
def codes(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """SwAV's codes: the Sinkhorn plan scaled so each sample's code sums to 1."""
    return sinkhorn(scores, epsilon, iterations) * scores.shape[0] * world_size()


@torch.no_grad()
def label_mean_embeddings(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row of ``z`` replaced by the unit mean of the rows (of every process) sharing its label."""
    z_all, labels_all = gather(z.float()), gather(labels)
    _, inverse = labels_all.unique(return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, z.shape[1], dtype=z_all.dtype, device=z.device)
    sums.index_add_(0, inverse, z_all)
    mine = inverse[rank() * z.shape[0]:(rank() + 1) * z.shape[0]]
    return F.normalize(sums[mine], dim=1).to(z.dtype)  # the sum has the mean's direction


class SwAV(Framework):
    def __init__(self, arch: str, cifar_stem: bool = False, prototypes: int = 3000,
                 crop_sizes=(32, 16), crop_counts=(2, 4), crop_min_scale=(0.14, 0.05), crop_max_scale=(1.0, 0.14),
                 epsilon: float = 0.05, sinkhorn_iterations: int = 3, queue_size: int = 3840,
                 queue_start_epoch: int = 15, freeze_prototypes_iters: int = 313, dim: int = PROJECTION_DIM):
        super().__init__()
        lengths = {len(crop_sizes), len(crop_counts), len(crop_min_scale), len(crop_max_scale)}
        if len(lengths) != 1:
            raise ValueError("swav crop sizes, counts, min and max scales need one entry per crop group")
        if crop_counts[0] < len(ASSIGNMENT_CROPS):
            raise ValueError(f"SwAV computes codes on the first {len(ASSIGNMENT_CROPS)} crops: the first crop "
                             f"group needs at least {len(ASSIGNMENT_CROPS)} crops (got {crop_counts[0]})")
        self.encoder = Encoder(arch, cifar_stem)
        self.prototypes = nn.Linear(dim, prototypes, bias=False)
        self.crops = [(int(s), int(c), float(lo), float(hi))
                      for s, c, lo, hi in zip(crop_sizes, crop_counts, crop_min_scale, crop_max_scale)]
        self.num_views = sum(c for _, c, _, _ in self.crops)
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.queue_start_epoch = queue_start_epoch
        self.freeze_prototypes_iters = freeze_prototypes_iters
        per_process = queue_size // world_size()
        self.register_buffer("queue", torch.zeros(len(ASSIGNMENT_CROPS), per_process, dim))
        self.register_buffer("queue_active", torch.zeros((), dtype=torch.bool))
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.zeros((), dtype=torch.long))

    # -- views --------------------------------------------------------------------------------
    def view_specs(self, cfg: aug.AugmentConfig) -> list[aug.AugmentConfig]:
        """Multi-crop: the large crops first (they give the codes), then the small ones."""
        return [dataclasses.replace(cfg, size=size, scale=(lo, hi), jitter=SWAV_JITTER, blur_p=self.blur_p)
                for size, count, lo, hi in self.crops for _ in range(count)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)

    # -- forward ------------------------------------------------------------------------------
    def _embeddings(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Unit embeddings of all crops, ``[n_crops * B, D]``: backbone per resolution, head once."""
        features, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            features.append(self.encoder.backbone(torch.cat(views[start:end])))
            start = end
        return F.normalize(self.encoder.head(torch.cat(features)), dim=1)

    def _label_levels(self, detector: Detector, index: torch.Tensor) -> list[torch.Tensor | None]:
        labels = detector.level_labels()
        if labels is None:
            if not isinstance(detector, NoDetector):
                raise ValueError(f"framework swav averages embeddings by pseudo label, but detector "
                                 f"{detector.name!r} has no labels: use --detector ifnd (or none / true_labels)")
            return [None]
        return [level.to(index.device)[index] for level in labels]

    def training_loss(self, views: list[torch.Tensor], index: torch.Tensor, detector: Detector,
                      objective: str, temperature: float, kernel: str = "pairs") -> torch.Tensor:
        with torch.no_grad():  # SwAV: unit prototypes at the start of every iteration
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        frozen = bool(self.iteration < self.freeze_prototypes_iters)
        b = index.shape[0]
        z = self._embeddings(views)
        weight = self.prototypes.weight.detach() if frozen else self.prototypes.weight
        scores = z @ weight.T  # [n_crops * B, K]
        log_p = F.log_softmax(scores.float() / temperature, dim=1)
        z_detached = z.detach()
        self.last_embedding = (index, z_detached[:b])
        levels = self._label_levels(detector, index)
        use_queue = self._queue_in_use()
        loss = scores.new_zeros((), dtype=torch.float32)
        for slot, crop in enumerate(ASSIGNMENT_CROPS):
            z_crop = z_detached[crop * b:(crop + 1) * b]
            queue_scores = self.queue[slot] @ self.prototypes.weight.detach().T if use_queue else None
            for labels in levels:
                z_code = z_crop if labels is None else label_mean_embeddings(z_crop, labels)
                s = z_code @ self.prototypes.weight.detach().T
                if queue_scores is not None:
                    s = torch.cat([queue_scores.to(s.dtype), s])
                q = codes(s, self.epsilon, self.sinkhorn_iterations)[-b:]
                predict = [v for v in range(self.num_views) if v != crop]
                sub = sum(-(q * log_p[v * b:(v + 1) * b]).sum(dim=1).mean() for v in predict)
                loss = loss + sub / len(predict)
            if self.training and self.queue_active:
                self._push(slot, z_crop)
        return loss / (len(ASSIGNMENT_CROPS) * len(levels))

    # -- queue --------------------------------------------------------------------------------
    def _queue_in_use(self) -> bool:
        if self.queue.shape[1] == 0:
            return False
        if not bool(self.queue_active) and int(self.epoch) >= self.queue_start_epoch:
            self.queue_active.fill_(True)
        # SwAV uses the queue once it is full (its last row has been written).
        return bool(self.queue_active) and bool(self.queue[:, -1].abs().sum() > 0)

    @torch.no_grad()
    def _push(self, slot: int, z: torch.Tensor) -> None:
        b = z.shape[0]
        if b > self.queue.shape[1]:
            return
        self.queue[slot, b:] = self.queue[slot, :-b].clone()
        self.queue[slot, :b] = z.to(self.queue.dtype)

    @torch.no_grad()
    def after_step(self) -> None:
        self.iteration += 1


def config_problem(cfg) -> str | None:
    crops = (cfg.swav_crop_sizes, cfg.swav_crop_counts, cfg.swav_crop_min_scale, cfg.swav_crop_max_scale)
    if len({len(c) for c in crops}) != 1 or not cfg.swav_crop_sizes:
        return ("swav_crop_sizes, swav_crop_counts, swav_crop_min_scale and swav_crop_max_scale need one entry per "
                "crop group (App. F: sizes 160 96, counts 2 4, min scales 0.14 0.05, max scales 1 0.14)")
    if cfg.swav_crop_counts[0] < 2 or min(cfg.swav_crop_counts) < 1:
        return (f"swav_crop_counts={cfg.swav_crop_counts}: the first group needs at least 2 crops (SwAV computes "
                "codes on two large crops) and every group at least 1")
    if min(cfg.swav_crop_sizes) < 4:
        return f"swav_crop_sizes={cfg.swav_crop_sizes}: crops need at least 4 pixels"
    for lo, hi in zip(cfg.swav_crop_min_scale, cfg.swav_crop_max_scale):
        if not 0 < lo <= hi <= 1:
            return f"swav crop scales ({lo}, {hi}) must satisfy 0 < min <= max <= 1"
    if cfg.swav_prototypes < 1 or cfg.swav_sinkhorn_iters < 1 or not cfg.swav_epsilon > 0:
        return ("swav_prototypes and swav_sinkhorn_iters must be >= 1 and swav_epsilon > 0 (SwAV: 3000 prototypes, "
                "3 iterations, epsilon 0.05)")
    if cfg.swav_queue_size and cfg.swav_queue_size < cfg.batch_size:
        return (f"swav_queue_size={cfg.swav_queue_size} is smaller than the batch size {cfg.batch_size}: the queue "
                f"keeps past batches, so use at least --swav-queue-size {cfg.batch_size} (SwAV: 3840 at batch 256), "
                "or 0 for none")
    if cfg.swav_queue_start_epoch < 0 or cfg.swav_freeze_prototypes_iters < 0:
        return "swav_queue_start_epoch and swav_freeze_prototypes_iters must be >= 0"
    return None


SPEC = FrameworkSpec(
    "swav", lambda cfg: SwAV(cfg.arch, cfg.cifar_stem, prototypes=cfg.swav_prototypes, crop_sizes=cfg.swav_crop_sizes,
                             crop_counts=cfg.swav_crop_counts, crop_min_scale=cfg.swav_crop_min_scale,
                             crop_max_scale=cfg.swav_crop_max_scale, epsilon=cfg.swav_epsilon,
                             sinkhorn_iterations=cfg.swav_sinkhorn_iters, queue_size=cfg.swav_queue_size,
                             queue_start_epoch=cfg.swav_queue_start_epoch,
                             freeze_prototypes_iters=cfg.swav_freeze_prototypes_iters),
    "SwAV: multi-crop swapped prediction of Sinkhorn codes; IFND averages codes' embeddings by pseudo label (App. F)",
    objectives=("instance", "elimination"), contrastive=False, label_detectors_only=True, blur=True, step_cost=1.5,
    fields=("swav_prototypes", "swav_crop_sizes", "swav_crop_counts", "swav_crop_min_scale", "swav_crop_max_scale",
            "swav_epsilon", "swav_sinkhorn_iters", "swav_queue_size", "swav_queue_start_epoch",
            "swav_freeze_prototypes_iters"),
    check=config_problem)
