"""One masked contrastive kernel; every objective of the suite is a choice of masks.

For anchor ``i`` and candidates ``j`` with logits ``l_ij = z_i . z_j / T`` and, per label level,
a positive set ``P(i)`` and a kept set ``S(i) ⊇ P(i)`` the kernel returns the mean over anchors of

    loss_i = 1/|P(i)| * sum_{p in P(i)} [ -l_ip + log sum_{s in S(i)} exp(l_is) ]

The kept set is given as what it lacks: ``S(i)`` is the anchor's valid candidates (a dense
``[A, C]`` mask: not the anchor itself, no empty queue slot) minus a sparse set of *excluded*
pairs per level; positives are sparse pairs. Then:

* instance loss (paper Eq. 1, SimCLR / MoCo v2): ``P`` = the other view, nothing excluded;
* elimination (Eq. 3): the detected false negatives are excluded;
* attraction (Eq. 4, SupCon's L_out averaging): the detected false negatives join ``P``;
* SupCon oracle: attraction with the true labels;
* GloFND: elimination where "detected" means ``s_ij > lambda_i``;
* ProtoNCE (PCL): the instance loss here; the prototype term is the detector's ``extra_loss``.

Several label levels (hierarchical k, Sec. 3.2) are a leading axis ``L`` of the pairs and the
loss is the mean over levels. Anchors without any positive are left out of the mean. Because
false negatives are few per anchor (a handful of same-cluster samples among 65536 queue keys),
the kernel costs one dense pass like plain InfoNCE plus work in the number of pairs
(``benchmarks/loss_kernel.py`` measures it).
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
    PROTONCE = "protonce"        # PCL's L_ProtoNCE: instance masks + the detector's prototype term (Table 7)


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
    if false_negative is None or objective in (Objective.INSTANCE, Objective.PROTONCE):
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


def check_kernel_inputs(logits: torch.Tensor, valid: torch.Tensor, positive: Pairs) -> None:
    """What every kernel assumes: a valid mask shaped like the logits, and positives that are valid candidates."""
    if valid.shape != logits.shape:
        raise ValueError(f"valid mask {tuple(valid.shape)} does not match logits {tuple(logits.shape)}")
    if len(positive):
        positive_is_valid = valid[positive.anchor, positive.candidate].all()
        message = "a positive pair is not a valid candidate (the anchor itself or an empty queue slot)"
        if positive_is_valid.device.type != "cpu":
            torch._assert_async(positive_is_valid, message)  # (no host synchronisation on a GPU)
        elif not bool(positive_is_valid):
            raise ValueError(message)


def masked_contrastive_loss(
    logits: torch.Tensor, valid: torch.Tensor, positive: Pairs, excluded: Pairs | None = None
) -> torch.Tensor:
    """Mean masked contrastive loss over levels and anchors; ``logits`` and ``valid`` ``[A, C]``.

    ``positive`` must be valid and not excluded at their level; ``excluded`` lists each entry once
    per level; levels ``L`` = the larger of the two sets' ``levels``. Computed in float32 whatever
    the autocast dtype; rows where the excluded hold nearly all the mass are summed directly rather
    than as "all minus excluded" (no cancellation). Loss and gradient (Appendix A, Eqs. 8 and 10:
    softmax over the kept set minus the positive weights) are computed together; backward only
    scales the stored gradient. An entry excluded at every level gets a zero gradient (exactly
    with one level, to float32 rounding of ``e_c * sum_l w_l`` with several).
    """
    check_kernel_inputs(logits, valid, positive)
    if torch.is_grad_enabled() and logits.requires_grad:
        return _MaskedContrastive.apply(logits, valid, positive, excluded)
    return _loss_and_gradient(logits, valid, positive, excluded, need_grad=False)[0]


def _loss_and_gradient(logits, valid, positive: Pairs, excluded: Pairs | None, need_grad: bool):
    """``(mean loss, its gradient w.r.t. logits or None)``.

    With ``p`` the softmax of the logits over each anchor's valid candidates (``p_c = e^{l_c} / Z``), per
    level ``l`` and anchor ``a`` the kept fraction is ``K = 1 - sum_{excluded} p_c``, the loss
    ``log Z + log K - mean_{p in P} l_p`` and ``d loss / d l_c = [c kept] p_c / K - [c in P] / |P|``.
    The softmax is the framework's fused one, in place (``exp`` alone is slower on a CPU, and a fresh
    ``[A, C]`` buffer costs more than the arithmetic: its pages are touched for the first time).
    """
    levels = max(positive.levels, excluded.levels if excluded is not None else 1)
    anchors, candidates = logits.shape
    device = logits.device
    with torch.autocast(device.type, enabled=False):
        logits = logits.detach().float()
        # invalid candidates get the smallest float, not -inf: a row with none valid stays finite
        prob = torch.empty(anchors, candidates, device=device)  # the one [A, C] buffer: becomes the gradient
        torch.where(valid, logits, logits.new_tensor(torch.finfo(torch.float32).min), out=prob)
        row_max = prob.amax(1)
        torch.ops.aten._softmax.out(prob, 1, False, out=prob)  # in place: each entry is read before it is written
        # the largest probability is e^0 / sum_c e^{l_c - max}: log Z without another pass over exp
        log_normalizer = row_max.double() - prob.amax(1).double().log()
        flat_prob = prob.view(-1)
        kept = torch.ones(levels * anchors, dtype=torch.float64, device=device)
        if excluded is not None and len(excluded):
            excluded_flat = excluded.anchor * candidates + excluded.candidate
            excluded_prob = flat_prob.index_select(0, excluded_flat)
            excluded_row = excluded.level * anchors + excluded.anchor
            kept = kept.index_add_(0, excluded_row, excluded_prob.double(), alpha=-1)
            kept = _resum_slivers(kept.view(levels, anchors), prob, excluded).view(-1)
        kept = kept.view(levels, anchors)
        pos_levels = positive.levels
        positive_row = positive.level * anchors + positive.anchor
        positive_flat = positive.anchor * candidates + positive.candidate
        pos_logit = logits.reshape(-1).index_select(0, positive_flat).double()
        pos_sum = pos_logit.new_zeros(pos_levels * anchors).index_add_(0, positive_row, pos_logit)
        pos_count = pos_logit.new_zeros(pos_levels * anchors).index_add_(0, positive_row,
                                                                         torch.ones_like(pos_logit))
        pos_sum, pos_count = pos_sum.view(pos_levels, anchors), pos_count.view(pos_levels, anchors)
        has_positive = (pos_count > 0).expand(levels, anchors)
        count = has_positive.sum().clamp_min(1)
        per_anchor = kept.log() + log_normalizer - pos_sum / pos_count.clamp_min(1)
        loss = (torch.where(has_positive, per_anchor, 0).sum() / count).float()
        if not need_grad:
            return loss, None
        kept_weight = torch.where(has_positive, kept.reciprocal(), 0) / count                   # [L, A]
        grad = prob.mul_(kept_weight.sum(0).float()[:, None])
        if excluded is not None and len(excluded):
            # each excluded (level, entry) takes its level's share back out of p_c * sum_l w_l
            share = kept_weight.view(-1).index_select(0, excluded_row).float()
            flat_prob.index_add_(0, excluded_flat, excluded_prob * share, alpha=-1)
        pos_weight = torch.where(has_positive[:pos_levels], pos_count.clamp_min(1).reciprocal(), 0) / count
        if pos_levels < levels:  # level-shared positives weigh once per level
            pos_weight = pos_weight * levels
        flat_prob.index_put_((positive_flat,), -pos_weight.view(-1).index_select(0, positive_row).float(),
                             accumulate=True)
    return loss, grad


_SLIVER = 1e-3


def _resum_slivers(kept, prob, excluded: Pairs):
    """Re-sum directly the rows whose kept fraction is under ``_SLIVER``.

    A float32 softmax row is good to about ``1e-6`` of its total, so "1 minus excluded" is good to
    ``1e-3`` of the kept mass while that is at least ``1e-3`` of the total (bf16 logits carry
    ``4e-3`` rounding of their own); rows where detected false negatives hold more (it takes
    same-cluster candidates far closer than the rest and a low temperature) are summed over
    their kept entries instead.
    """
    sliver = kept < _SLIVER
    if not bool(sliver.any()):
        return kept
    level, anchor = sliver.nonzero(as_tuple=True)
    rows = prob[anchor]                                                  # [R, C]
    slot = torch.full_like(sliver, -1, dtype=torch.long)
    slot[level, anchor] = torch.arange(level.numel(), device=level.device)
    row = slot[excluded.level, excluded.anchor]
    mine = row >= 0
    rows[row[mine], excluded.candidate[mine]] = 0
    kept = kept.clone()
    kept[level, anchor] = rows.sum(1, dtype=torch.float64)
    return kept


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


def stored_gradient(ctx, loss_name: str) -> torch.Tensor:
    """The gradient a forward left on ``ctx``, handed over once to be scaled in place (no second ``[A, C]`` tensor)."""
    grad = getattr(ctx, "grad", None)
    if grad is None:
        raise RuntimeError(f"{loss_name}: backward ran twice through the same graph "
                           "(retain_graph=True is not supported); recompute the loss instead")
    del ctx.grad
    return grad


class _MaskedContrastive(torch.autograd.Function):
    """Loss and its closed-form gradient in one pass; backward only scales the stored gradient."""

    @staticmethod
    def forward(ctx, logits, valid, positive, excluded):
        loss, ctx.grad = _loss_and_gradient(logits, valid, positive, excluded, need_grad=True)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad = stored_gradient(ctx, "masked_contrastive_loss")
        if grad_output.device.type != "cpu" or grad_output.item() != 1:  # (a pass over [A, C] saved on a CPU)
            grad.mul_(grad_output)
        return grad, None, None, None
