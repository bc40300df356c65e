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
* PCL: the instance loss here; its prototype term is the ``pcl`` detector's ``extra_loss``.

:func:`reference_loss` is that formula in float64 over dense masks, line by line Eqs. 1, 3 and 4:
the oracle the tests hold :func:`masked_contrastive_loss` (and :mod:`ifnd.fused_loss`) to. The fast
kernel computes the same numbers without an ``[L, A, C]`` tensor: one softmax over the valid
candidates gives ``log Z`` and ``p``; the kept set's mass is ``Z (1 - sum_{excluded} p)`` (re-summed
directly where that is a sliver); and the gradient (Appendix A) is written in the softmax's buffer.
The pairs (:mod:`ifnd.pairs`) say which entries are positive or excluded.

Several label levels (hierarchical k, Sec. 3.2) are a leading axis ``L`` of the pairs and the
loss is the mean over levels. Anchors without any positive are left out of the mean. Because
false negatives are few per anchor (a handful of same-cluster samples among 65536 queue keys),
the kernel costs one dense pass like plain InfoNCE plus work in the number of pairs
(``benchmarks/loss_kernel.py`` measures it).
"""
from __future__ import annotations

import torch

from ifnd.pairs import Objective, Pairs


def reference_loss(objective: Objective | str, logits: torch.Tensor, valid: torch.Tensor, positive: Pairs,
                   false_negative: Pairs | None = None) -> torch.Tensor:
    """The paper's loss in float64 over dense masks: the oracle of the fast kernels (slow, small inputs only).

    For anchor ``i`` with instance positive set ``I(i)`` (its other view), detected false negatives
    ``F(i)`` and valid candidates ``V(i)``, per label level:

    * Eq. 1 (instance):    ``P(i) = I(i)``,          ``S(i) = V(i)``
    * Eq. 3 (elimination): ``P(i) = I(i)``,          ``S(i) = V(i) - F(i)``
    * Eq. 4 (attraction):  ``P(i) = I(i) + F(i)``,   ``S(i) = V(i)``

    ``loss_i = 1/|P(i)| sum_{p in P(i)} [ log sum_{s in S(i)} exp(l_is) - l_ip ]``, averaged over the
    (level, anchor) terms with a positive. Detections that are no valid negative (the anchor's
    positive, itself, an empty slot) are ignored, as in :func:`ifnd.pairs.objective_pairs`.
    """
    objective = Objective(objective)
    anchors, candidates = valid.shape
    instance = positive.to_mask(anchors, candidates)[:1]                          # [1, A, C]
    if false_negative is None or objective is Objective.INSTANCE:
        detected = torch.zeros_like(instance)
    else:
        detected = false_negative.to_mask(anchors, candidates) & valid & ~instance  # [L, A, C]
    levels = detected.shape[0]
    instance, valid = instance.expand(levels, -1, -1), valid.expand(levels, -1, -1)
    if objective is Objective.ATTRACTION:
        pos, kept = instance | detected, valid
    elif objective is Objective.ELIMINATION:
        pos, kept = instance, valid & ~detected
    else:
        pos, kept = instance, valid
    logits = logits.double()
    log_denominator = logits.masked_fill(~kept, float("-inf")).logsumexp(-1)     # log sum_{s in S(i)} exp(l_is)
    count = pos.sum(-1)
    per_anchor = log_denominator - (logits * pos).sum(-1) / count.clamp_min(1)
    return per_anchor[count > 0].mean()


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
