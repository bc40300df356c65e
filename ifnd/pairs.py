"""Index machinery of the masked kernel: sparse pair sets, the same-label join, each objective's pairs.

A batch's positives and detected false negatives are few per anchor, so they travel as index lists
(:class:`Pairs`), never as dense ``[L, A, C]`` masks; :func:`same_label_pairs` joins label vectors
into such lists, and :func:`objective_pairs` turns an objective (paper Sec. 3.3) and a detector's
pairs into the positive and excluded sets that :func:`ifnd.losses.masked_contrastive_loss` reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Objective(str, Enum):
    """How detected false negatives are removed (paper Sec. 3.3)."""

    INSTANCE = "instance"        # Eq. 1: nothing is removed
    ELIMINATION = "elimination"  # Eq. 3
    ATTRACTION = "attraction"    # Eq. 4


@dataclass(frozen=True)
class Pairs:
    """The True entries of a sparse ``[L, A, C]`` bool mask as index lists, each entry once.

    ``levels`` is ``L``. Positives with ``levels == 1`` hold for every level of the loss (the
    instance positives, shared by all label levels).
    """

    level: torch.Tensor
    anchor: torch.Tensor
    candidate: torch.Tensor
    levels: int = 1

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "Pairs":
        """From a dense ``[A, C]`` or ``[L, A, C]`` bool mask."""
        if mask.dim() == 2:
            mask = mask.unsqueeze(0)
        return cls(*_few_nonzero(mask), levels=mask.shape[0])

    def to_mask(self, anchors: int, candidates: int) -> torch.Tensor:
        out = torch.zeros(self.levels, anchors, candidates, dtype=torch.bool, device=self.anchor.device)
        out[self.level, self.anchor, self.candidate] = True
        return out

    def select(self, keep: torch.Tensor) -> "Pairs":
        """The entries where the bool ``keep`` is True."""
        at = keep.nonzero().view(-1)  # (index_select is several times faster than bool indexing on a CPU)
        return Pairs(self.level.index_select(0, at), self.anchor.index_select(0, at),
                     self.candidate.index_select(0, at), self.levels)

    def at_every_level(self, levels: int) -> "Pairs":
        """A level-shared set written out for each of ``levels`` levels."""
        if self.levels == levels:
            return self
        n = self.anchor.numel()
        level = torch.arange(levels, device=self.anchor.device).repeat_interleave(n)
        return Pairs(level, self.anchor.repeat(levels), self.candidate.repeat(levels), levels)

    def __len__(self) -> int:
        return self.anchor.numel()


def same_label_pairs(anchor_labels: torch.Tensor, candidate_labels: torch.Tensor) -> Pairs:
    """Pairs ``(l, a, c)`` with ``anchor_labels[l, a] == candidate_labels[l, c]``; labels ``[L, A]``, ``[L, C]`` (any integers).

    A sort-merge join: ``O((A + C) log C)`` plus the number of pairs, never an ``[L, A, C]`` tensor.
    """
    levels, anchors = anchor_labels.shape
    candidates = candidate_labels.shape[1]
    device = anchor_labels.device
    level_of = torch.arange(levels, device=device)[:, None]               # key % levels = level: levels never meet
    keys, order = (candidate_labels.long() * levels + level_of).reshape(-1).sort()
    wanted = (anchor_labels.long() * levels + level_of).reshape(-1)       # one row per (level, anchor)
    first = torch.searchsorted(keys, wanted)
    count = torch.searchsorted(keys, wanted, right=True) - first
    row = torch.repeat_interleave(count, output_size=int(count.sum()))   # each pair's (level, anchor) row
    skip = first - (torch.cumsum(count, 0) - count)                       # sorted position - output position
    position = torch.arange(row.numel(), device=device) + skip.index_select(0, row)
    column = (order % candidates).index_select(0, position)
    level = torch.arange(levels, device=device).repeat_interleave(anchors)
    anchor = torch.arange(anchors, device=device).repeat(levels)
    return Pairs(level.index_select(0, row), anchor.index_select(0, row), column, levels)


def positive_columns(positive: Pairs, anchors: int) -> torch.Tensor:
    """Each anchor's positive candidates as a row of an ``[A, W]`` table, ``W`` the most any anchor has (-1: none)."""
    count = torch.bincount(positive.anchor, minlength=anchors)
    order = positive.anchor.argsort(stable=True)
    anchor = positive.anchor.index_select(0, order)
    slot = torch.arange(len(positive), device=anchor.device) - (torch.cumsum(count, 0) - count).index_select(0, anchor)
    table = torch.full((anchors, int(count.max()) if len(positive) else 0), -1, dtype=torch.long, device=anchor.device)
    table[anchor, slot] = positive.candidate.index_select(0, order)
    return table


def objective_pairs(
    objective: Objective | str, positive: Pairs, valid: torch.Tensor, false_negative: Pairs | None
) -> tuple[Pairs, Pairs | None]:
    """``(positives, excluded)`` of one objective for :func:`masked_contrastive_loss`.

    ``positive`` are the instance positives (level-shared), ``valid`` the ``[A, C]`` candidates that
    count at all, ``false_negative`` the detector's pairs (``None``: no detection). Detections that
    are not valid negatives (the anchor's own positive, itself, an empty queue slot) are ignored.
    """
    objective = Objective(objective)
    if false_negative is None or objective is Objective.INSTANCE:
        return positive, None
    anchors, candidates = valid.shape
    flat = false_negative.anchor * candidates + false_negative.candidate
    is_negative = valid.reshape(-1).index_select(0, flat)
    if len(positive):
        table = positive_columns(positive, anchors)
        is_negative &= ~(table.index_select(0, false_negative.anchor) == false_negative.candidate[:, None]).any(1)
    detected = false_negative.select(is_negative)
    if objective is Objective.ELIMINATION:
        return positive, detected
    shared = positive.at_every_level(detected.levels)
    return Pairs(*(torch.cat([a, b]) for a, b in zip((shared.level, shared.anchor, shared.candidate),
                                                     (detected.level, detected.anchor, detected.candidate))),
                 levels=detected.levels), None


def _few_nonzero(mask: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, ...]:
    """``mask.nonzero(as_tuple=True)`` for a mostly-False bool mask: only chunks holding a True are
    scanned (a vectorised max over uint8 finds them; ``nonzero`` itself is slow on big bool tensors)."""
    if mask.numel() < 64 * chunk or mask.device.type != "cpu":  # (a GPU's nonzero is fast)
        return mask.nonzero(as_tuple=True)
    flat = mask.reshape(-1).view(torch.uint8)
    whole = flat.numel() // chunk * chunk
    hit = torch.cat([torch.arange(0, whole, chunk, device=mask.device)[flat[:whole].view(-1, chunk).amax(1) > 0],
                     torch.arange(whole, flat.numel(), chunk, device=mask.device)])
    if hit.numel() * chunk * 8 > flat.numel():  # not sparse (e.g. attraction with small k): plain nonzero
        return mask.nonzero(as_tuple=True)
    index = hit[:, None] + torch.arange(chunk, device=mask.device)
    index = index[index < flat.numel()]
    index = index[flat[index] > 0]
    out = []
    for size in reversed(mask.shape):
        out.append(index % size)
        index = index // size
    return tuple(reversed(out))
