"""The masked kernel against independent oracles (paper Eqs. 1, 3, 4 and Appendix A)."""
import math

import pytest
import torch
import torch.nn.functional as F

from ifnd.losses import masked_contrastive_loss, reference_loss
from ifnd.pairs import Pairs, objective_pairs, same_label_pairs

T = 0.2


def simclr_masks(batch: int):
    """Sample index of each view, the instance positives (the other view) and the valid candidates."""
    index = torch.arange(batch).repeat(2)
    is_self = torch.eye(2 * batch, dtype=torch.bool)
    positive = (index[:, None] == index[None, :]) & ~is_self
    return index, Pairs.from_mask(positive), ~is_self


def no_pairs(levels=1):
    empty = torch.zeros(0, dtype=torch.long)
    return Pairs(empty, empty, empty, levels)


def kernel(objective, logits, positive, valid, false_negative):
    p, excluded = objective_pairs(objective, positive, valid, false_negative)
    return masked_contrastive_loss(logits, valid, p, excluded)


def unit(n, d=8, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=1)


def infonce_reference(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent as SimCLR writes it: cross-entropy over the other 2B-1 views."""
    n = z.shape[0]
    logits = (z @ z.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    target = (torch.arange(n) + n // 2) % n
    return F.cross_entropy(logits, target)


def supcon_reference(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Brute-force loop over SupCon's L_out (Khosla et al., 2020, Eq. 2)."""
    total, anchors = 0.0, 0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        denominator = torch.logsumexp(torch.stack([z[i] @ z[a] / temperature for a in others]), 0)
        total = total + sum(denominator - z[i] @ z[p] / temperature for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_elimination_without_detections_equals_infonce():
    z = unit(12)
    _, positive, valid = simclr_masks(6)
    loss = kernel("elimination", z @ z.T / T, positive, valid, no_pairs())
    assert torch.allclose(loss, infonce_reference(z, T).float(), atol=1e-6)


def test_attraction_with_true_labels_equals_supcon():
    z = unit(16, seed=1)
    index, positive, valid = simclr_masks(8)
    classes = torch.tensor([0, 1, 0, 2, 1, 0, 2, 3])
    labels = classes[index]
    loss = kernel("attraction", z @ z.T / T, positive, valid, same_label_pairs(labels[None], labels[None]))
    assert torch.allclose(loss, supcon_reference(z, labels, T).float(), atol=1e-5)


def test_queue_candidates_equal_moco_cross_entropy():
    q, k, queue = unit(4, seed=2), unit(4, seed=3), unit(32, seed=4)
    candidates = torch.cat([k, queue])
    own = torch.arange(4)
    positive = Pairs(torch.zeros_like(own), own, own)
    valid = torch.ones(4, 36, dtype=torch.bool)
    valid[:, :4] = torch.eye(4, dtype=torch.bool)  # MoCo: the other keys of the batch are not candidates
    logits = q @ candidates.T / T
    moco = F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / T,
                           torch.zeros(4, dtype=torch.long))
    assert torch.allclose(kernel("instance", logits, positive, valid, None), moco.float(), atol=1e-6)


def anchor_gradient(objective: str, z_anchor, candidates, fn_row):
    """Autograd gradient of one anchor's loss (the float64 formula) w.r.t. its embedding, Appendix A."""
    z_anchor = z_anchor.clone().requires_grad_(True)
    positive = Pairs(*torch.zeros(3, 1, dtype=torch.long))  # candidate 0 is the other view i'
    valid = torch.ones(1, len(candidates), dtype=torch.bool)
    reference_loss(objective, z_anchor[None] @ candidates.T / T, valid, positive, Pairs.from_mask(fn_row[None])).backward()
    return z_anchor.grad


@pytest.mark.parametrize("seed", range(3))
def test_gradients_match_appendix_a(seed):
    candidates = torch.randn(10, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    z_i = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    fn = torch.zeros(10, dtype=torch.bool)
    fn[[3, 7]] = True
    sims = candidates @ z_i / T

    # Eq. 8 / 9: elimination; S(i) = {i'} u {n : y_n != y_i}
    in_s = ~fn
    sigma = sims.masked_fill(~in_s, float("-inf")).softmax(0)
    negatives = in_s.clone()
    negatives[0] = False
    expected = (sigma[negatives, None] * candidates[negatives]).sum(0) / T - (1 - sigma[0]) * candidates[0] / T
    assert torch.allclose(anchor_gradient("elimination", z_i, candidates, fn), expected, atol=1e-10)

    # Eq. 10 / 11: attraction; S(i) = all, P(i) = {i'} u false negatives
    sigma_all = sims.softmax(0)
    pos = fn.clone()
    pos[0] = True
    negatives = ~pos
    sigma_plus = 1 / pos.sum() - sigma_all[pos]
    expected = (sigma_all[negatives, None] * candidates[negatives]).sum(0) / T - (sigma_plus[:, None] * candidates[pos]).sum(0) / T
    assert torch.allclose(anchor_gradient("attraction", z_i, candidates, fn), expected, atol=1e-10)


@pytest.mark.parametrize("objective", ["instance", "elimination", "attraction"])
@pytest.mark.parametrize("seed", range(3))
def test_kernel_loss_and_gradient_match_the_float64_formula(objective, seed):
    """Random SimCLR batch, 3 label levels with overlapping detections, some rows without positives."""
    gen = torch.Generator().manual_seed(seed)
    index, positive, valid = simclr_masks(12)
    valid[:, 5] = False  # an empty candidate slot
    positive = positive.select(positive.candidate != 5)  # ... so anchor 17 has no positive
    labels = torch.stack([torch.randint(k, (12,), generator=gen) for k in (2, 3, 5)])[:, index]
    fn = same_label_pairs(labels, labels)
    logits = torch.randn(24, 24, generator=gen, dtype=torch.float64) * 3
    x = logits.float().requires_grad_(True)
    loss = kernel(objective, x, positive, valid, fn)
    loss.backward()
    reference = logits.clone().requires_grad_(True)
    expected = reference_loss(objective, reference, valid, positive, fn)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(x.grad.double(), reference.grad, atol=1e-7)


@pytest.mark.parametrize("excluded_logit", [25.0, -10.0 + math.log(300)])
def test_excluded_mass_far_above_the_kept_mass_loses_no_precision(excluded_logit):
    """Kept = total minus excluded, or summed directly where that would cancel (e^35 x the rest)."""
    _, positive, valid = simclr_masks(4)
    logits = torch.full((8, 8), -10.0, dtype=torch.float64)
    logits[:, 2] = excluded_logit  # a detected false negative of every anchor
    fn = Pairs.from_mask(torch.ones(8, 8, dtype=torch.bool))
    x = logits.float().requires_grad_(True)
    loss = kernel("elimination", x, positive, valid, fn.select(fn.candidate == 2))
    loss.backward()
    reference = logits.clone().requires_grad_(True)
    expected = reference_loss("elimination", reference, valid, positive, fn.select(fn.candidate == 2))
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(x.grad.double(), reference.grad, atol=1e-7)


def test_invalid_candidates_far_above_the_valid_ones_do_not_underflow():
    """The anchor's own logit (invalid) 200 above every valid one: e^-200 is 0 in float32."""
    gen = torch.Generator().manual_seed(3)
    _, positive, valid = simclr_masks(4)
    logits = (torch.randn(8, 8, generator=gen, dtype=torch.float64) - 100).fill_diagonal_(100)
    labels = torch.tensor([0, 0, 1, 1] * 2)
    fn = same_label_pairs(labels[None], labels[None])
    x = logits.float().requires_grad_(True)
    loss = kernel("elimination", x, positive, valid, fn)
    loss.backward()
    reference = logits.clone().requires_grad_(True)
    expected = reference_loss("elimination", reference, valid, positive, fn)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(x.grad.double(), reference.grad, atol=1e-7)


def test_detected_false_negative_gets_zero_gradient():
    z = unit(12, dtype=torch.float32, seed=5).requires_grad_(True)
    index, positive, valid = simclr_masks(6)
    labels = torch.tensor([0, 1, 2, 3, 4, 5] * 2)
    labels[3] = labels[9] = 0  # sample 3 is a false negative of sample 0, in both views
    logits = z @ z.detach().T / T  # gradient only through the anchor side
    loss = kernel("elimination", logits, positive, valid, same_label_pairs(labels[None], labels[None]))
    logits_grad = torch.autograd.grad(loss, logits)[0]
    assert (logits_grad[0, [3, 9]] == 0).all() and (logits_grad[3, [0, 6]] == 0).all()
    assert (logits_grad[0, 1] != 0)


def test_levels_are_averaged():
    z = unit(8, dtype=torch.float32, seed=6)
    _, positive, valid = simclr_masks(4)
    a = torch.tensor([0, 0, 1, 1] * 2)
    b = torch.tensor([0, 1, 2, 3] * 2)
    logits = z @ z.T / T
    both = kernel("elimination", logits, positive, valid, same_label_pairs(torch.stack([a, b]), torch.stack([a, b])))
    one = [kernel("elimination", logits, positive, valid, same_label_pairs(x[None], x[None])) for x in (a, b)]
    assert torch.allclose(both, sum(one) / 2, atol=1e-6)


def test_same_label_pairs_equal_the_dense_comparison():
    gen = torch.Generator().manual_seed(0)
    anchor = torch.randint(7, (3, 9), generator=gen)
    candidate = torch.randint(7, (3, 40), generator=gen)
    candidate[1] += 100  # a level whose labels start elsewhere
    anchor[1, :3] += 100
    candidate[2] -= 3  # and one with negative labels
    anchor[2] -= 3
    pairs = same_label_pairs(anchor, candidate)
    dense = anchor[:, :, None] == candidate[:, None, :]
    assert len(pairs) == int(dense.sum()) and torch.equal(pairs.to_mask(9, 40), dense)


def test_instance_objective_ignores_detections():
    _, positive, valid = simclr_masks(3)
    p, excluded = objective_pairs("instance", positive, valid, Pairs.from_mask(torch.ones(2, 6, 6, dtype=torch.bool)))
    assert p is positive and excluded is None


def test_detections_on_positives_or_invalid_candidates_are_ignored():
    _, positive, valid = simclr_masks(3)
    everything = Pairs.from_mask(torch.ones(1, 6, 6, dtype=torch.bool))
    _, excluded = objective_pairs("elimination", positive, valid, everything)
    expected = valid & ~positive.to_mask(6, 6)[0]
    assert torch.equal(excluded.to_mask(6, 6)[0], expected)


def test_positive_that_is_not_a_candidate_is_rejected():
    _, positive, valid = simclr_masks(3)
    valid[0, 3] = False  # anchor 0's positive
    with pytest.raises(ValueError, match="not a valid candidate"):
        masked_contrastive_loss(torch.zeros(6, 6), valid, positive)


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError):
        objective_pairs("repulsion", no_pairs(), torch.ones(2, 2, dtype=torch.bool), None)


def test_transposed_logits_give_the_same_loss_and_gradient():
    z = unit(12, dtype=torch.float32, seed=7)
    _, positive, valid = simclr_masks(6)
    labels = torch.tensor([0, 1, 0, 2, 1, 0] * 2)
    fn = same_label_pairs(labels[None], labels[None])
    dense = (z @ z.T / T).requires_grad_(True)
    strided = (z @ z.T / T).T.contiguous().T.requires_grad_(True)  # same values, column-major
    losses = [kernel("elimination", x, positive, valid.T.contiguous().T, fn) for x in (dense, strided)]
    for loss in losses:
        loss.backward()
    assert torch.equal(losses[0], losses[1]) and torch.allclose(dense.grad, strided.grad)


def test_a_second_backward_through_the_same_loss_is_refused():
    _, positive, valid = simclr_masks(4)
    x = torch.randn(8, 8).requires_grad_(True)
    loss = masked_contrastive_loss(x, valid, positive)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice through the same graph"):
        loss.backward()
