"""What every false-negative detector provides to the trainer, and what it declares to the config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ifnd.pairs import Pairs, same_label_pairs


@dataclass
class ContrastiveBatch:
    """Everything a detector may look at for one loss evaluation.

    ``logits`` are ``s_ij / T`` for anchors (rows) against candidates (columns);
    ``anchor_index`` / ``candidate_index`` are dataset sample indices (-1: empty queue slot);
    ``positive`` holds each anchor's own other view(s) as :class:`~ifnd.pairs.Pairs`, ``valid``
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


def no_problem(cfg: Any) -> str | None:
    return None


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector is and can do; its module declares one, :data:`ifnd.falseneg.DETECTORS` lists them.

    ``build(cfg, true_labels)`` makes the detector (``true_labels``: the training labels after the
    config's ``label_map``). ``check(cfg)`` says why a config cannot run it (its own fields), or None;
    :meth:`ifnd.config.TrainConfig.validate` turns that into the one-line error.
    """

    name: str
    build: Callable[[Any, torch.Tensor], "Detector"]
    help: str                                   # one line for ``--help``
    objectives: tuple[str, ...] = ("elimination", "attraction")  # the objectives it serves (Sec. 3.3)
    label_based: bool = True    # detections are label equalities (false_negative_labels): the fused kernel serves it
    refreshes: bool = False     # re-detects from the embedding every ``refresh_every`` epochs
    extra_loss: bool = False    # adds a term on the anchors' embeddings: needs a contrastive framework
    fields: tuple[str, ...] = ()                # the config fields it owns (its ``--help`` group)
    check: Callable[[Any], str | None] = no_problem
    recorded_as: dict = field(default_factory=dict)
    """Fields under which runs of this detector were recorded before it had a name of its own; run
    identities (``reproduce.runs``) and old ``config.json`` files use them (PCL: ``ifnd`` + ``protonce``)."""


class Detector:
    """Finds false negatives; what the trainer calls. Subclasses say what they detect."""

    name = ""

    def refresh_due(self, epochs_done: int, total_epochs: int) -> bool:
        """Whether ``refresh`` must run after ``epochs_done`` epochs."""
        return False

    def refresh(self, epochs_done: int, total_epochs: int, features: FeatureFn) -> dict:
        """Re-detect from the current embedding; returns numbers to log."""
        return {}

    def false_negatives(self, batch: ContrastiveBatch) -> Pairs | None:
        """The detected false negatives ``(level, anchor, candidate)``, or ``None`` for none."""
        return None

    def false_negative_labels(self, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``false_negatives`` as labels ``([L, A], [L, C])``: equal at a level = detected there (``L = 0``:
        none), for the fused kernel. Only detectors declared ``label_based`` have them."""
        raise NotImplementedError(f"detector {self.name!r} does not give its detections as labels (it is not "
                                  "label based): the fused kernel cannot serve it; use --loss-kernel pairs")

    def detects(self, similarity: torch.Tensor, anchor_index: torch.Tensor) -> torch.Tensor | None:
        """``[A, C]``: the candidates it calls false negatives of the samples ``anchor_index`` from their cosine
        similarities, for a detector that detects by similarity (GloFND); ``None`` for the others (label-based
        ones have :meth:`level_labels`, ``none`` detects nothing). Measures detection after training."""
        return None

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


def no_labels(batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero label levels: nothing detected, as the fused kernel reads it."""
    anchors, candidates = batch.logits.shape
    no_levels = torch.zeros(0, anchors, dtype=torch.long, device=batch.logits.device)
    return no_levels, no_levels.new_zeros(0, candidates)


class NoDetector(Detector):
    """Detects nothing: instance-level learning (SimCLR / MoCo v2, paper Eq. 1)."""

    name = "none"

    def false_negative_labels(self, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return no_labels(batch)


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
    """The oracle: every sample of the anchor's true class is a false negative (SupCon with attraction,
    oracle elimination with elimination)."""

    name = "true_labels"

    def __init__(self, true_labels: torch.Tensor):
        super().__init__(torch.as_tensor(true_labels).view(1, -1))


def corrupt_labels(labels: torch.Tensor, rate: float, seed: int) -> torch.Tensor:
    """``labels`` (``[N]``) with exactly ``floor(rate * N)`` of them replaced by another class, never their own.

    The samples are a random choice and each new label is uniform over the other classes present, both
    drawn from one generator seeded with ``2 * seed`` (the run's seed: each training seed draws its own
    corruption; :mod:`ifnd.falseneg.scheduled` draws its acceptance order from ``2 * seed + 1``). With
    ``rate`` 0 the labels come back unchanged. On C classes, ``rate = (C - 1) / C`` makes every label
    uniform over the classes, independent of the true one (random labels).
    """
    labels = torch.as_tensor(labels).long().clone()
    count = int(rate * labels.numel() + 1e-9)
    if count == 0:
        return labels
    classes, index = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"label_corruption={rate} needs at least 2 classes to draw a wrong label from, and the "
                         f"labels have {len(classes)}: use another label_map or label_corruption=0")
    generator = torch.Generator().manual_seed(2 * seed)
    chosen = torch.randperm(labels.numel(), generator=generator)[:count]
    shift = torch.randint(1, len(classes), (count,), generator=generator)
    labels[chosen] = classes[(index[chosen] + shift) % len(classes)]
    return labels


NONE = DetectorSpec("none", lambda cfg, true_labels: NoDetector(), "detect nothing: the instance loss (Eq. 1)",
                    objectives=("instance",))
TRUE_LABELS = DetectorSpec(
    "true_labels", lambda cfg, true_labels: TrueLabelDetector(corrupt_labels(true_labels, cfg.label_corruption,
                                                                             cfg.seed)),
    "oracle: every sample of the anchor's true class (SupCon with attraction, oracle elimination with elimination)",
    fields=("label_corruption",))
