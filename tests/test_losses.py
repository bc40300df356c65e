"""The masked kernel against independent oracles (paper Eqs. 1, 3, 4 and Appendix A)."""
import pytest
import torch
import torch.nn.functional as F

from ifnd.losses import label_false_negatives, masked_contrastive_loss, objective_masks

T = 0.2


def simclr_masks(batch: int):
    index = torch.arange(batch).repeat(2)
    is_self = torch.eye(2 * batch, dtype=torch.bool)
    positive = (index[:, None] == index[None, :]) & ~is_self
    return index, positive, ~is_self


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
    nothing = torch.zeros(1, 12, 12, dtype=torch.bool)
    p, n = objective_masks("elimination", positive, valid, nothing)
    assert torch.allclose(masked_contrastive_loss(z @ z.T / T, p, n), infonce_reference(z, T).float(), atol=1e-6)


def test_attraction_with_true_labels_equals_supcon():
    z = unit(16, seed=1)
    index, positive, valid = simclr_masks(8)
    classes = torch.tensor([0, 1, 0, 2, 1, 0, 2, 3])
    labels = classes[index]
    fn = label_false_negatives(labels[None], labels[None])
    p, n = objective_masks("attraction", positive, valid, fn)
    expected = supcon_reference(z, labels, T)
    assert torch.allclose(masked_contrastive_loss(z @ z.T / T, p, n), expected.float(), atol=1e-5)


def test_queue_candidates_equal_moco_cross_entropy():
    q, k, queue = unit(4, seed=2), unit(4, seed=3), unit(32, seed=4)
    candidates = torch.cat([k, queue])
    positive = torch.zeros(4, 36, dtype=torch.bool)
    positive[torch.arange(4), torch.arange(4)] = True
    valid = torch.ones(4, 36, dtype=torch.bool)
    valid[:, :4] = positive[:, :4]  # MoCo: the other keys of the batch are not candidates
    p, n = objective_masks("instance", positive, valid, None)
    logits = q @ candidates.T / T
    moco = F.cross_entropy(torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / T,
                           torch.zeros(4, dtype=torch.long))
    assert torch.allclose(masked_contrastive_loss(logits, p, n), moco.float(), atol=1e-6)


def anchor_gradient(objective: str, z_anchor, candidates, fn_row):
    """Autograd gradient of one anchor's loss w.r.t. its (unnormalised) embedding, Appendix A."""
    z_anchor = z_anchor.clone().requires_grad_(True)
    positive = torch.zeros(1, len(candidates), dtype=torch.bool)
    positive[0, 0] = True  # candidate 0 is the other view i'
    valid = torch.ones_like(positive)
    p, n = objective_masks(objective, positive, valid, fn_row[None, None])
    logits = (z_anchor[None] @ candidates.T / T).double()
    loss = _kernel64(logits, p[0], n[0])
    loss.backward()
    return z_anchor.grad


def _kernel64(logits, p, n):
    """The kernel's formula in float64 (the kernel itself computes in float32)."""
    kept = p | n
    return (torch.logsumexp(logits.masked_fill(~kept, float("-inf")), 1) - (logits * p).sum(1) / p.sum(1)).mean()


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


def test_kernel_matches_its_float64_formula():
    logits = torch.randn(5, 9, dtype=torch.float64)
    p = torch.zeros(5, 9, dtype=torch.bool)
    p[torch.arange(5), torch.arange(5)] = True
    n = torch.rand(5, 9) > 0.3
    n &= ~p
    assert torch.allclose(masked_contrastive_loss(logits, p, n).double(), _kernel64(logits, p, n), atol=1e-6)


def test_detected_false_negative_gets_zero_gradient():
    z = unit(12, dtype=torch.float32, seed=5).requires_grad_(True)
    index, positive, valid = simclr_masks(6)
    labels = torch.tensor([0, 1, 2, 3, 4, 5] * 2)
    labels[3] = labels[9] = 0  # sample 3 is a false negative of sample 0, in both views
    fn = label_false_negatives(labels[None], labels[None])
    p, n = objective_masks("elimination", positive, valid, fn)
    logits = z @ z.detach().T / T  # gradient only through the anchor side
    logits_grad = torch.autograd.grad(masked_contrastive_loss(logits, p, n), logits)[0]
    assert (logits_grad[0, [3, 9]] == 0).all() and (logits_grad[3, [0, 6]] == 0).all()
    assert (logits_grad[0, 1] != 0)


def test_levels_are_averaged():
    z = unit(8, dtype=torch.float32, seed=6)
    _, positive, valid = simclr_masks(4)
    a = torch.tensor([0, 0, 1, 1] * 2)
    b = torch.tensor([0, 1, 2, 3] * 2)
    logits = z @ z.T / T
    both = objective_masks("elimination", positive, valid, label_false_negatives(torch.stack([a, b]), torch.stack([a, b])))
    one = [objective_masks("elimination", positive, valid, label_false_negatives(x[None], x[None])) for x in (a, b)]
    mean = sum(masked_contrastive_loss(logits, *m) for m in one) / 2
    assert torch.allclose(masked_contrastive_loss(logits, *both), mean, atol=1e-6)


def test_instance_objective_ignores_detections():
    _, positive, valid = simclr_masks(3)
    fn = torch.ones(2, 6, 6, dtype=torch.bool)
    p, n = objective_masks("instance", positive, valid, fn)
    assert p.shape == (1, 6, 6) and torch.equal(n[0], valid & ~positive)


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError):
        objective_masks("repulsion", torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool), None)
