"""The masked kernel for label detectors fused into two Triton passes over the logits (GPU).

Same loss and gradient as :func:`ifnd.losses.masked_contrastive_loss` on the pairs
``objective_pairs(objective, positive, valid, same_label_pairs(anchor_labels, candidate_labels))``,
without materialising a pair: no join, no ``nonzero``, no host synchronisation beyond the positives'
table width, a fixed number of kernel launches (the eager pair path costs ~80 launches and four
synchronisations, which is what makes it 6x InfoNCE on an H100; ``benchmarks/loss_kernel.py``).

Per anchor row, pass 1 accumulates with an online maximum ``m``: the valid mass ``S``, per level the
kept mass ``K_l`` (valid, minus same-label candidates that are not the anchor's positives), the count
and logit sum of those same-label candidates, and the count and logit sum of the instance positives.
Kept masses are summed directly, so there is no "total minus excluded" cancellation. Pass 2 writes
``d loss / d l_c`` (Appendix A) unnormalised and each row's loss; the mean's ``1 / #terms`` is applied
by the host (one scalar). Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (tests).
"""
from __future__ import annotations

import os
from enum import IntEnum

import torch

from ifnd.losses import stored_gradient
from ifnd.pairs import Objective

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: the pair path serves every device
    triton = None



class Mode(IntEnum):
    """What the kernels do with same-label candidates (the ``MODE`` constexpr of both passes)."""

    INSTANCE = 0     # nothing: every valid candidate in the denominator, the instance positives only
    ELIMINATION = 1  # out of their level's denominator (Eq. 3)
    ATTRACTION = 2   # among their level's positives (Eq. 4)


MODES = {Objective.INSTANCE: Mode.INSTANCE, Objective.ELIMINATION: Mode.ELIMINATION,
         Objective.ATTRACTION: Mode.ATTRACTION}


class Stat(IntEnum):
    """Columns of pass 1's per-row statistics: four scalars, then three blocks of ``LEVELS_P2`` (one per level)."""

    MAX = 0          # the online maximum m of the row's valid logits
    TOTAL = 1        # sum of exp(l - m) over the valid candidates
    POS_COUNT = 2    # number of instance positives
    POS_SUM = 3      # sum of their logits
    KEPT = 4         # block: per level, sum of exp(l - m) over the kept candidates
    # then SAME_COUNT (per level, same-label candidates) at KEPT + LEVELS_P2,
    # and SAME_SUM (their logit sums) at KEPT + 2 * LEVELS_P2


def stat_columns(levels_p2: int) -> int:
    """Width of the statistics table for ``levels_p2`` (a power of two >= the levels)."""
    return Stat.KEPT + 3 * levels_p2


_BLOCK = 1024


def available(device: torch.device) -> bool:
    """Whether the fused kernel can run on ``device``."""
    return triton is not None and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")


if triton is not None:
    _FLOOR = tl.constexpr(-3.0e38)  # the running maximum starts finite: rows without a valid candidate stay NaN-free
    _INSTANCE, _ELIMINATION, _ATTRACTION = (tl.constexpr(int(m)) for m in Mode)
    _MAX, _TOTAL, _POS_COUNT, _POS_SUM, _KEPT = (tl.constexpr(int(c)) for c in Stat)

    @triton.jit
    def _load_block(logits, valid, positive_columns, anchor_labels, candidate_labels, a, start, A, C,
                    WIDTH: tl.constexpr, LEVELS: tl.constexpr, LEVELS_P2: tl.constexpr, MODE: tl.constexpr,
                    BLOCK: tl.constexpr):
        """One block of a row: logits (float32), valid, instance positive, and ``[LEVELS_P2, BLOCK]`` same-label negatives."""
        cols = start + tl.arange(0, BLOCK)
        in_row = cols < C
        offset = a.to(tl.int64) * C + cols
        ok = tl.load(valid + offset, mask=in_row, other=0) != 0
        x = tl.load(logits + offset, mask=in_row, other=0.0).to(tl.float32)
        is_pos = cols < 0
        for w in tl.static_range(WIDTH):
            is_pos = is_pos | (cols == tl.load(positive_columns + a * WIDTH + w))
        is_pos = is_pos & ok
        level = tl.arange(0, LEVELS_P2)
        if MODE == _INSTANCE:
            same = (level[:, None] < 0) & in_row[None, :]
        else:
            level_ok = level < LEVELS
            own = tl.load(anchor_labels + level * A + a, mask=level_ok, other=0)
            theirs = tl.load(candidate_labels + level[:, None] * C + cols[None, :],
                             mask=level_ok[:, None] & in_row[None, :], other=0)
            same = (theirs == own[:, None]) & level_ok[:, None] & (ok & (is_pos == 0))[None, :]
        return ok, x, is_pos, same

    @triton.jit
    def _row_statistics(logits, valid, positive_columns, anchor_labels, candidate_labels, stats, A, C,
                        WIDTH: tl.constexpr, LEVELS: tl.constexpr, LEVELS_P2: tl.constexpr, MODE: tl.constexpr,
                        BLOCK: tl.constexpr):
        a = tl.program_id(0)
        m = tl.full((), _FLOOR, tl.float32)
        total = tl.zeros((), tl.float32)
        pos_count = tl.zeros((), tl.float32)
        pos_sum = tl.zeros((), tl.float32)
        kept = tl.zeros((LEVELS_P2,), tl.float32)
        same_count = tl.zeros((LEVELS_P2,), tl.float32)
        same_sum = tl.zeros((LEVELS_P2,), tl.float32)
        for start in range(0, C, BLOCK):
            ok, x, is_pos, same = _load_block(logits, valid, positive_columns, anchor_labels, candidate_labels,
                                              a, start, A, C, WIDTH, LEVELS, LEVELS_P2, MODE, BLOCK)
            m_new = tl.maximum(m, tl.max(tl.where(ok, x, _FLOOR), 0))
            scale = tl.exp(m - m_new)
            e = tl.where(ok, tl.exp(x - m_new), 0.0)
            total = total * scale + tl.sum(e, 0)
            kept = kept * scale + tl.sum(tl.where(same, 0.0, e[None, :]), 1)
            pos_count += tl.sum(is_pos.to(tl.float32), 0)
            pos_sum += tl.sum(tl.where(is_pos, x, 0.0), 0)
            same_count += tl.sum(same.to(tl.float32), 1)
            same_sum += tl.sum(tl.where(same, x[None, :], 0.0), 1)
            m = m_new
        base = stats + a * (_KEPT + 3 * LEVELS_P2)
        tl.store(base + _MAX, m)
        tl.store(base + _TOTAL, total)
        tl.store(base + _POS_COUNT, pos_count)
        tl.store(base + _POS_SUM, pos_sum)
        level = tl.arange(0, LEVELS_P2)
        tl.store(base + _KEPT + level, kept)
        tl.store(base + _KEPT + LEVELS_P2 + level, same_count)
        tl.store(base + _KEPT + 2 * LEVELS_P2 + level, same_sum)

    @triton.jit
    def _row_gradient(logits, valid, positive_columns, anchor_labels, candidate_labels, stats, grad, row_loss,
                      row_terms, A, C, WIDTH: tl.constexpr, LEVELS: tl.constexpr, LEVELS_P2: tl.constexpr,
                      MODE: tl.constexpr, BLOCK: tl.constexpr):
        a = tl.program_id(0)
        base = stats + a * (_KEPT + 3 * LEVELS_P2)
        level = tl.arange(0, LEVELS_P2)
        m = tl.load(base + _MAX)
        total = tl.load(base + _TOTAL)
        pos_count = tl.load(base + _POS_COUNT)
        pos_sum = tl.load(base + _POS_SUM)
        per_level = tl.zeros((LEVELS_P2,), tl.float32)
        denominator = total + per_level      # instance: every valid candidate, the instance positives
        count = pos_count + per_level
        positive_sum = pos_sum + per_level
        if MODE == _ELIMINATION:  # the kept set's mass
            denominator = tl.load(base + _KEPT + level)
        elif MODE == _ATTRACTION:  # the same-label candidates join the positives
            count += tl.load(base + _KEPT + LEVELS_P2 + level)
            positive_sum += tl.load(base + _KEPT + 2 * LEVELS_P2 + level)
        has = (count > 0) & (level < LEVELS)
        term = tl.where(has, m + tl.log(denominator) - positive_sum / tl.maximum(count, 1.0), 0.0)
        tl.store(row_loss + a, tl.sum(term, 0))
        tl.store(row_terms + a, tl.sum(has.to(tl.float32), 0))
        kept_weight = tl.where(has, 1.0 / denominator, 0.0)
        pos_weight = tl.where(has, 1.0 / tl.maximum(count, 1.0), 0.0)
        for start in range(0, C, BLOCK):
            ok, x, is_pos, same = _load_block(logits, valid, positive_columns, anchor_labels, candidate_labels,
                                              a, start, A, C, WIDTH, LEVELS, LEVELS_P2, MODE, BLOCK)
            e = tl.where(ok, tl.exp(x - m), 0.0)
            if MODE == _ELIMINATION:  # same-label candidates are out of level l's denominator
                g = e * tl.sum(tl.where(same, 0.0, kept_weight[:, None]), 0) - tl.where(is_pos, tl.sum(pos_weight, 0), 0.0)
            elif MODE == _ATTRACTION:  # ... or among its positives
                g = e * tl.sum(kept_weight, 0) - tl.sum(tl.where(same | is_pos[None, :], pos_weight[:, None], 0.0), 0)
            else:
                g = e * tl.sum(kept_weight, 0) - tl.where(is_pos, tl.sum(pos_weight, 0), 0.0)
            cols = start + tl.arange(0, BLOCK)
            tl.store(grad + a.to(tl.int64) * C + cols, g, mask=cols < C)


def fused_label_loss(logits: torch.Tensor, valid: torch.Tensor, positive_columns: torch.Tensor, objective: str,
                     anchor_labels: torch.Tensor | None, candidate_labels: torch.Tensor | None) -> torch.Tensor:
    """Mean masked contrastive loss; ``positive_columns`` ``[A, W]`` (-1: none), labels ``[L, A]`` / ``[L, C]``."""
    return _FusedLabelContrastive.apply(logits, valid, positive_columns, objective, anchor_labels, candidate_labels)


class _FusedLabelContrastive(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, valid, positive_columns, objective, anchor_labels, candidate_labels):
        mode = MODES[Objective(objective)]
        anchors, candidates = logits.shape
        if mode is Mode.INSTANCE or anchor_labels is None or len(anchor_labels) == 0:  # nothing detected
            mode, levels = Mode.INSTANCE, 1
            anchor_labels = candidate_labels = positive_columns  # never read
        else:
            levels = anchor_labels.shape[0]
            anchor_labels, candidate_labels = anchor_labels.long().contiguous(), candidate_labels.long().contiguous()
        levels_p2 = triton.next_power_of_2(levels)
        logits = logits.detach().contiguous()
        valid = valid.contiguous().view(torch.uint8)
        positive_columns = positive_columns.to(torch.int32).contiguous()
        stats = torch.empty(anchors, stat_columns(levels_p2), dtype=torch.float32, device=logits.device)
        grad = torch.empty(anchors, candidates, dtype=torch.float32, device=logits.device)
        row_loss = torch.empty(anchors, dtype=torch.float32, device=logits.device)
        row_terms = torch.empty_like(row_loss)
        shape = dict(WIDTH=positive_columns.shape[1], LEVELS=levels, LEVELS_P2=levels_p2, MODE=int(mode), BLOCK=_BLOCK)
        inputs = (logits, valid, positive_columns, anchor_labels, candidate_labels, stats)
        _row_statistics[(anchors,)](*inputs, anchors, candidates, **shape)
        _row_gradient[(anchors,)](*inputs, grad, row_loss, row_terms, anchors, candidates, **shape)
        terms = row_terms.sum().clamp_min(1)
        ctx.grad, ctx.terms = grad, terms
        return row_loss.sum() / terms

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad = stored_gradient(ctx, "fused_label_loss")
        return grad.mul_(grad_output / ctx.terms), None, None, None, None, None
