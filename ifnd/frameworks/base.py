"""What the trainer asks of a framework; the contrastive default serves SimCLR and MoCo v2."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ifnd import augment as aug
from ifnd.falseneg.base import ContrastiveBatch, Detector, no_problem
from ifnd.fused_loss import fused_label_loss
from ifnd.losses import check_kernel_inputs, masked_contrastive_loss
from ifnd.pairs import objective_pairs, positive_columns


def contrastive_loss(batch: ContrastiveBatch, detector: Detector, objective: str, kernel: str = "pairs") -> torch.Tensor:
    """The masked kernel on one batch with the detector's false negatives removed (or attracted).

    ``kernel="fused"`` runs :mod:`ifnd.fused_loss` (same loss and gradient, two Triton passes; CUDA) on
    the detector's labels; only label-based detectors have them (the config refuses the others).
    """
    if kernel == "fused":
        check_kernel_inputs(batch.logits, batch.valid, batch.positive)
        table = positive_columns(batch.positive, batch.logits.shape[0])
        loss = fused_label_loss(batch.logits, batch.valid, table, objective, *detector.false_negative_labels(batch))
    else:
        positive, excluded = objective_pairs(objective, batch.positive, batch.valid, detector.false_negatives(batch))
        loss = masked_contrastive_loss(detector.loss_logits(batch, excluded), batch.valid, positive, excluded)
    return loss + detector.extra_loss(batch)


@dataclass(frozen=True)
class FrameworkSpec:
    """What a framework is and can train; its module declares one, :data:`ifnd.frameworks.FRAMEWORKS` lists them.

    ``check(cfg)`` says why a config cannot run it (its own fields), or None.
    """

    name: str
    build: Callable[[Any], "Framework"]
    help: str                                   # one line for ``--help``
    objectives: tuple[str, ...] = ("instance", "elimination", "attraction")  # what its loss can train
    contrastive: bool = True           # anchors against candidates (a ContrastiveBatch): serves detectors'
                                       # extra losses and both loss kernels
    label_detectors_only: bool = False  # reads the detector's labels (SwAV's label-mean codes)
    blur: bool = False                 # its recipe blurs (p = 0.5) from 64 px (ImageNet-sized images)
    step_cost: float = 1.0             # one training image's cost in SimCLR two-view passes (budget estimates)
    fields: tuple[str, ...] = ()       # the config fields it owns (its ``--help`` group)
    check: Callable[[Any], str | None] = no_problem


class Framework(nn.Module):
    """A pre-training framework: views of a batch in, a scalar loss out.

    Subclasses provide ``contrastive_batch`` (anchors against candidates) or override
    ``training_loss`` altogether (SwAV); ``backbone`` and ``embed`` serve evaluation and clustering.
    """

    num_views = 2
    blur_p = 0.0  # Gaussian-blur probability of the views (MoCo v2 / SwAV recipes; set by the registry)
    last_embedding: tuple[torch.Tensor, torch.Tensor] | None = None
    """``(sample index, unit z)`` of the last ``training_loss``, one row per sample (the trainer's feature bank)."""

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The projection output ``z`` (the features clustered by default)."""
        return self.encoder(x)

    def view_specs(self, cfg: aug.AugmentConfig) -> list[aug.AugmentConfig]:
        """The recipe of each view; two of the same by default (with the framework's blur)."""
        return [dataclasses.replace(cfg, blur_p=self.blur_p)] * self.num_views

    def views(self, raw: torch.Tensor, cfg: aug.AugmentConfig, mean, std, gen: torch.Generator,
              rows: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """Augmented views of a uint8 batch, one per ``view_specs`` entry, batched on its device
        (``rows``: this process's shard of the global batch, see :func:`ifnd.augment.augment`)."""
        return [aug.augment(raw, spec, mean, std, gen, rows) for spec in self.view_specs(cfg)]

    def contrastive_batch(self, views: list[torch.Tensor], index: torch.Tensor, temperature: float) -> ContrastiveBatch:
        raise NotImplementedError

    def training_loss(self, views: list[torch.Tensor], index: torch.Tensor, detector: Detector,
                      objective: str, temperature: float, kernel: str = "pairs") -> torch.Tensor:
        """The masked kernel on this batch with the detector's false negatives removed."""
        batch = self.contrastive_batch(views, index, temperature)
        self.last_embedding = (index, batch.anchor_embedding[:index.shape[0]].detach())  # the first view
        return contrastive_loss(batch, detector, objective, kernel)

    def after_step(self) -> None:
        """Called after each optimiser step (MoCo updates its key encoder here)."""

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch (0-based); SwAV starts its queue from it."""
