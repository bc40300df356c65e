"""What every false-negative detector provides to the trainer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ifnd.losses import Pairs, same_label_pairs


@dataclass
class ContrastiveBatch:
    """Everything a detector may look at for one loss evaluation.

    ``logits`` are ``s_ij / T`` for anchors (rows) against candidates (columns);
    ``anchor_index`` / ``candidate_index`` are dataset sample indices (-1: empty queue slot);
    ``positive`` holds each anchor's own other view(s) as :class:`~ifnd.losses.Pairs`, ``valid``
    (``[A, C]``) the candidates that count at all;
    ``anchor_embedding`` (optional) holds the anchors' unit embeddings ``z`` with gradient, for
    detectors whose ``extra_loss`` needs them (PCL's prototype term).
    """

    logits: torch.Tensor
    anchor_index: torch.Tensor
    candidate_index: torch.Tensor
    positive: Pairs
    valid: torch.Tensor
    temperature: float
    anchor_embedding: torch.Tensor | None = None


FeatureFn = Callable[[], torch.Tensor]
"""Returns L2-normalisable features of the whole training set (evaluation transform)."""


class Detector:
    """Finds false negatives; the default finds none (instance-level SimCLR / MoCo v2)."""

    name = "none"

    def refresh_due(self, epochs_done: int, total_epochs: int) -> bool:
        """Whether ``refresh`` must run after ``epochs_done`` epochs."""
        return False

    def refresh(self, epochs_done: int, total_epochs: int, features: FeatureFn) -> dict:
        """Re-detect from the current embedding; returns numbers to log."""
        return {}

    def false_negatives(self, batch: ContrastiveBatch) -> Pairs | None:
        """The detected false negatives ``(level, anchor, candidate)``, or ``None`` for none."""
        return None

    def false_negative_labels(self, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``false_negatives`` as labels ``([L, A], [L, C])``: equal at a level = detected there (``L = 0``:
        none), for the fused kernel; ``None`` when the detections are not label equalities."""
        anchors, candidates = batch.logits.shape
        no_levels = torch.zeros(0, anchors, dtype=torch.long, device=batch.logits.device)
        return no_levels, no_levels.new_zeros(0, candidates)

    def loss_logits(self, batch: ContrastiveBatch, excluded: Pairs | None) -> torch.Tensor:
        """The logits the kernel sees once ``excluded`` left the negatives (GloFND rescales the kept ones)."""
        return batch.logits

    def extra_loss(self, batch: ContrastiveBatch) -> torch.Tensor | float:
        """A term added to the contrastive loss (PCL's prototype term); none by default."""
        return 0.0

    def level_labels(self) -> torch.Tensor | None:
        """``[L, N]`` labels per sample when the detector is label based (for MTPR/MTNR)."""
        return None

    def cluster_assignments(self) -> list[torch.Tensor]:
        """The raw k-means assignment per level from the last refresh (for NMI, Fig. 6); none here."""
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class LabelDetector(Detector):
    """Two samples are false negatives when they share a label at a level; labels ``[L, N]``."""

    def __init__(self, labels: torch.Tensor):
        self.labels = labels.long()

    def false_negatives(self, batch: ContrastiveBatch) -> Pairs:
        return same_label_pairs(*self.false_negative_labels(batch))

    def false_negative_labels(self, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.labels.device != batch.logits.device:  # moved once per (re)labelling, not per step
            self.labels = self.labels.to(batch.logits.device)
        return self.labels[:, batch.anchor_index], self.labels[:, batch.candidate_index.clamp_min(0)]

    def level_labels(self) -> torch.Tensor:
        return self.labels

    def state_dict(self) -> dict:
        return {"labels": self.labels.cpu().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.labels = state["labels"].long()


class TrueLabelDetector(LabelDetector):
    """SupCon oracle: every sample of the anchor's true class is a false negative."""

    name = "true_labels"

    def __init__(self, true_labels: torch.Tensor):
        super().__init__(torch.as_tensor(true_labels).view(1, -1))
