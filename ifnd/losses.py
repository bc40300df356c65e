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
    kept = negative & ~false_negative
    if objective is Objective.ELIMINATION:
        return instance_positive.expand_as(kept), kept
    return instance_positive | (negative & false_negative), kept


def masked_contrastive_loss(
    logits: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> torch.Tensor:
    """Mean masked contrastive loss; ``logits`` ``[A, C]``, masks ``[L, A, C]`` or ``[A, C]``.

    Computed in float32 whatever the autocast dtype. The row maximum is taken over all
    candidates, so masked terms never overflow and the kernel needs one ``exp`` for all levels.
    Loss and gradient (Appendix A, Eqs. 8 and 10: softmax over the kept set minus the positive
    weights) are computed together, a block of anchors at a time, so no float mask of the whole
    ``[L, A, C]`` problem is ever held (``benchmarks/loss_kernel.py`` measures it).
    """
    logits = logits.float()
    if positive.dim() == 2:
        positive = positive.unsqueeze(0)
    if negative.dim() == 2:
        negative = negative.unsqueeze(0)
    levels = max(positive.shape[0], negative.shape[0])
    positive = positive.expand(levels, *positive.shape[1:])
    negative = negative.expand(levels, *negative.shape[1:])

    def negatives_into(out: torch.Tensor, start: int, stop: int) -> None:
        out.copy_(negative[:, start:stop].view(torch.uint8))  # uint8 -> float converts ~4x faster than bool

    if torch.is_grad_enabled() and logits.requires_grad:
        return _MaskedContrastive.apply(logits, positive, negatives_into)
    return _masked_loss_blocks(logits, positive, negatives_into, need_grad=False)[0]


# Elements (levels x anchors x candidates) of the float mask one block of anchors holds: on a CPU a
# block stays in the last-level cache and under the allocator's mmap threshold; a GPU takes the
# paper's MoCo (256 x 65792 x 3) and SimCLR (2048 x 2048 x 3) shapes in one block.
_BLOCK_ELEMENTS = {"cpu": 1 << 22}
_DEFAULT_BLOCK_ELEMENTS = 1 << 28


def _masked_loss_blocks(logits, positive, negatives_into, need_grad, block_elements=None):
    """``(mean loss, its gradient w.r.t. logits or None)``, the kept set a block of anchors at a time.

    ``positive`` is a bool ``[L, A, C]`` (an expanded ``[1, A, C]`` counts once for all levels);
    ``negatives_into(out, start, stop)`` writes a float 0/1 mask into ``out`` (``[L, stop - start, C]``)
    that is 1 on the kept negatives ``N`` of anchors ``start:stop`` (the kernel sets ``P`` itself).
    Per level ``l`` and anchor ``a`` with ``s`` the max-shifted logits and ``e = exp(s)``:
    ``loss = log sum_{c in P u N} e_c - mean_{p in P} s_p`` and
    ``d loss / d s_c = [c in P u N] e_c / sum_{P u N} e - [c in P] / |P|``.
    Positives are few (the other view; the detected false negatives under attraction): they are
    handled as index lists, the kept set as a float mask per block.
    """
    levels, anchors, candidates = positive.shape
    device, dtype = logits.device, torch.float32
    with torch.autocast(device.type, enabled=False):
        row_max = logits.detach().amax(dim=1, keepdim=True)
        exp = torch.sub(logits, row_max).exp_()                  # [A, C]; becomes the gradient in place
        shared = levels == 1 or positive.stride(0) == 0
        pos_levels = 1 if shared else levels
        level, row, col = _few_nonzero(positive[:pos_levels])
        per_level = torch.zeros(pos_levels, anchors, 2, dtype=dtype, device=device)
        pos_shifted = logits[row, col] - row_max[row, 0]
        per_level.index_put_((level, row), torch.stack([pos_shifted, torch.ones_like(pos_shifted)], 1),
                             accumulate=True)
        pos_sum, pos_count = (t.T.expand(anchors, levels) for t in per_level.unbind(-1))  # [A, L]
        has_positive = pos_count > 0
        count = has_positive.sum().clamp_min(1).to(dtype)
        denominator = torch.empty(anchors, levels, dtype=dtype, device=device)

        budget = block_elements or _BLOCK_ELEMENTS.get(device.type, _DEFAULT_BLOCK_ELEMENTS)
        rows = max(1, min(anchors, budget // max(1, levels * candidates)))
        buffer = torch.empty(rows, levels, candidates, dtype=dtype, device=device)
        if shared and rows < anchors:  # positives come sorted by row: each block's are a slice
            bounds = torch.searchsorted(row, torch.arange(0, anchors + rows, rows, device=device)).tolist()
        for block, start in enumerate(range(0, anchors, rows)):
            stop = min(anchors, start + rows)
            weighted = buffer[:stop - start]
            negatives_into(weighted.transpose(0, 1), start, stop)
            if rows >= anchors:  # one block (a GPU): every positive
                weighted[(row, slice(None), col) if shared else (row, level, col)] = 1
            elif shared:
                lo, hi = bounds[block], bounds[block + 1]
                weighted[row[lo:hi] - start, :, col[lo:hi]] = 1
            else:
                mine = (row >= start) & (row < stop)
                weighted[row[mine] - start, level[mine], col[mine]] = 1
            weighted.mul_(exp[start:stop].unsqueeze(1))          # [c in P u N] e_c, per level
            torch.sum(weighted, -1, out=denominator[start:stop])
            if need_grad:
                kept_weight = torch.where(has_positive[start:stop], denominator[start:stop].reciprocal(), 0) / count
                torch.bmm(kept_weight.unsqueeze(1), weighted, out=exp[start:stop].unsqueeze(1))
        per_anchor = denominator.log() - pos_sum / pos_count.clamp_min(1)
        loss = torch.where(has_positive, per_anchor, 0).sum() / count
        if not need_grad:
            return loss, None
        pos_weight = torch.where(has_positive, pos_count.clamp_min(1).reciprocal(), 0) / count   # [A, L]
        pos_weight = pos_weight.sum(1)[row] if shared else pos_weight[row, level]
        grad = exp.index_put_((row, col), -pos_weight, accumulate=True)
    return loss, grad


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


class _MaskedContrastive(torch.autograd.Function):
    """Loss and its closed-form gradient in one pass; backward only scales the stored gradient."""

    @staticmethod
    def forward(ctx, logits, positive, negatives_into):
        loss, ctx.grad = _masked_loss_blocks(logits, positive, negatives_into, need_grad=True)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        # The stored gradient is handed over and scaled in place: no second [A, C] tensor.
        grad = getattr(ctx, "grad", None)
        if grad is None:
            raise RuntimeError("masked_contrastive_loss: backward ran twice through the same graph "
                               "(retain_graph=True is not supported); recompute the loss instead")
        del ctx.grad
        return grad.mul_(grad_output), None, None


def label_false_negatives(anchor_labels: torch.Tensor, candidate_labels: torch.Tensor) -> torch.Tensor:
    """``[L, A, C]`` mask of candidates that share the anchor's label at each level."""
    return anchor_labels.unsqueeze(-1) == candidate_labels.unsqueeze(-2)
