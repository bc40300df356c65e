"""One masked contrastive kernel; every objective of the suite is a choice of masks.

For anchor ``i`` and candidates ``j`` with logits ``l_ij = z_i . z_j / T`` the kernel takes a
positive mask ``P`` and a kept-negative mask ``N`` (disjoint) and returns, per anchor,

    loss_i = 1/|P(i)| * sum_{p in P(i)} [ -l_ip + log sum_{s in P(i) u N(i)} exp(l_is) ]

which is, with ``S(i) = P(i) u N(i)``:

* instance loss (paper Eq. 1, SimCLR / MoCo v2): ``P`` = the other view, ``N`` = all others;
* elimination (Eq. 3): detected false negatives removed from ``N``;
* attraction (Eq. 4, SupCon's L_out averaging): detected false negatives moved from ``N`` to ``P``;
* SupCon oracle: attraction with the true labels;
* GloFND: elimination where "detected" means ``s_ij > lambda_i``;
* ProtoNCE (PCL): the instance masks here; the prototype term is the detector's ``extra_loss``.

Several label levels (hierarchical k, Sec. 3.2) stack masks on a leading axis ``L`` and the
loss is the mean over levels. Anchors without any positive are left out of the mean.
"""
from __future__ import annotations

from enum import Enum

import torch


class Objective(str, Enum):
    """How detected false negatives are removed (paper Sec. 3.3)."""

    INSTANCE = "instance"        # Eq. 1: nothing is removed
    ELIMINATION = "elimination"  # Eq. 3
    ATTRACTION = "attraction"    # Eq. 4
    PROTONCE = "protonce"        # PCL's L_ProtoNCE: instance masks + the detector's prototype term (Table 7)


def objective_masks(
    objective: Objective | str,
    instance_positive: torch.Tensor,
    valid: torch.Tensor,
    false_negative: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and kept-negative masks ``[L, A, C]`` for one objective.

    ``instance_positive`` / ``valid`` are ``[A, C]`` (``valid`` excludes the anchor itself and
    empty queue slots); ``false_negative`` is ``[L, A, C]`` or ``None`` for no detection.
    """
    objective = Objective(objective)
    negative = valid & ~instance_positive
    if false_negative is None or objective in (Objective.INSTANCE, Objective.PROTONCE):
        return instance_positive.unsqueeze(0), negative.unsqueeze(0)
    detected = false_negative & negative
    if objective is Objective.ELIMINATION:
        return instance_positive.expand_as(detected), negative & ~detected
    return instance_positive | detected, negative & ~detected


def masked_contrastive_loss(
    logits: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> torch.Tensor:
    """Mean masked contrastive loss; ``logits`` ``[A, C]``, masks ``[L, A, C]`` or ``[A, C]``.

    Computed in float32 whatever the autocast dtype. The row maximum is taken over all
    candidates, so masked terms never overflow and the kernel needs one ``exp`` for all levels.
    """
    logits = logits.float()
    if positive.dim() == 2:
        positive, negative = positive.unsqueeze(0), negative.unsqueeze(0)
    shifted = logits - logits.detach().amax(dim=1, keepdim=True)
    exp = shifted.exp()
    kept = (positive | negative).to(exp.dtype)
    pos = positive.to(exp.dtype)
    log_denominator = torch.einsum("lac,ac->la", kept, exp).log()
    pos_count = pos.sum(-1)
    pos_logit_mean = torch.einsum("lac,ac->la", pos, shifted) / pos_count.clamp_min(1)
    per_anchor = log_denominator - pos_logit_mean
    has_positive = pos_count > 0
    return per_anchor[has_positive].mean() if has_positive.any() else logits.sum() * 0


def label_false_negatives(anchor_labels: torch.Tensor, candidate_labels: torch.Tensor) -> torch.Tensor:
    """``[L, A, C]`` mask of candidates that share the anchor's label at each level."""
    return anchor_labels.unsqueeze(-1) == candidate_labels.unsqueeze(-2)
