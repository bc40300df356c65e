"""SwAV: Sinkhorn marginals, multi-crop, frozen/normalised prototypes, queue, IFND's label-averaged codes."""
import pytest
import torch
import torch.nn.functional as F

from ifnd import augment as aug
from ifnd.falseneg.base import LabelDetector, NoDetector
from ifnd.frameworks.swav import SwAV, codes, label_mean_embeddings, sinkhorn

MEAN, STD = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])


def test_sinkhorn_marginals():
    scores = F.normalize(torch.randn(32, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    plan = sinkhorn(scores, epsilon=0.05, iterations=3)
    assert plan.shape == (32, 10) and (plan >= 0).all()
    assert torch.allclose(plan.sum(1), torch.full((32,), 1 / 32), atol=1e-7)  # each sample: 1/B, exactly
    assert torch.allclose(plan.sum(0), torch.full((10,), 1 / 10), rtol=0.25)   # each prototype: about 1/K
    converged = sinkhorn(scores, epsilon=0.05, iterations=200)
    assert torch.allclose(converged.sum(0), torch.full((10,), 1 / 10), rtol=1e-3)
    assert torch.allclose(codes(scores).sum(1), torch.ones(32), atol=1e-5)  # SwAV's codes: rows sum to 1


def test_sinkhorn_spreads_a_collapsed_batch():
    scores = torch.zeros(40, 4)
    scores[:, 0] = 0.5  # every sample prefers prototype 0; equipartition spreads them anyway
    plan = sinkhorn(scores + 0.01 * torch.randn(40, 4, generator=torch.Generator().manual_seed(1)), 0.05, 50)
    assert torch.allclose(plan.sum(0), torch.full((4,), 0.25), atol=1e-3)


def test_label_mean_embeddings():
    z = F.normalize(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.tensor([7, 3, 7, 9, 3])
    out = label_mean_embeddings(z, labels)
    assert torch.allclose(out[0], F.normalize(z[0] + z[2], dim=0)) and torch.equal(out[0], out[2])
    assert torch.allclose(out[1], F.normalize(z[1] + z[4], dim=0))
    assert torch.allclose(out[3], z[3])  # a label of its own (unaccepted sample): its own embedding


def small_swav(**kwargs) -> SwAV:
    torch.manual_seed(0)
    settings = dict(prototypes=6, queue_size=0, freeze_prototypes_iters=0)
    settings.update(kwargs)
    return SwAV("convnet4", **settings)


def test_multi_crop_views():
    model = small_swav(crop_sizes=(32, 16), crop_counts=(2, 4))
    raw = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    views = model.views(raw, aug.AugmentConfig(), MEAN, STD, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 4
    assert model.num_views == 6


def views_and_index(model, b=8):
    raw = torch.randint(0, 256, (b, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return model.views(raw, aug.AugmentConfig(), MEAN, STD, torch.Generator().manual_seed(0)), torch.arange(b)


def test_prototypes_frozen_at_first_and_normalised_every_step():
    model = small_swav(freeze_prototypes_iters=2)
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    views, index = views_and_index(model)
    for step in range(3):
        model.zero_grad(set_to_none=True)
        model.training_loss(views, index, NoDetector(), "instance", 0.1).backward()
        assert torch.allclose(model.prototypes.weight.norm(dim=1), torch.ones(6), atol=1e-5)
        assert (model.prototypes.weight.grad is None) == (step < 2)
        assert model.encoder.head[0].weight.grad is not None
        model.after_step()


def test_queue_starts_at_its_epoch_and_is_used_once_full():
    model = small_swav(queue_size=16, queue_start_epoch=1)
    views, index = views_and_index(model)  # batch 8: two steps fill a queue of 16
    model.training_loss(views, index, NoDetector(), "instance", 0.1)
    assert not model.queue_active and model.queue.abs().sum() == 0
    model.set_epoch(1)
    for filled_rows in (8, 16):
        model.training_loss(views, index, NoDetector(), "instance", 0.1)
        assert bool(model.queue_active) and int((model.queue[0].abs().sum(1) > 0).sum()) == filled_rows
    assert model._queue_in_use()
    assert {"queue", "queue_active", "iteration", "epoch"} <= set(model.state_dict())


def test_ifnd_codes_are_shared_by_samples_with_one_pseudo_label(monkeypatch):
    model = small_swav()
    views, index = views_and_index(model, b=6)
    labels = torch.tensor([[0, 1, 0, 2, 1, 11]])  # sample 5 unaccepted (its own label)
    seen = []
    original = codes

    def spy(scores, *args):
        out = original(scores, *args)
        seen.append(out)
        return out

    monkeypatch.setattr("ifnd.frameworks.swav.codes", spy)
    model.training_loss(views, index, LabelDetector(labels), "elimination", 0.1)
    for q in seen:  # one code per assignment crop
        assert torch.allclose(q[0], q[2]) and torch.allclose(q[1], q[4])
        assert not torch.allclose(q[0], q[3])
    seen.clear()
    model.training_loss(views, index, NoDetector(), "instance", 0.1)
    assert not torch.allclose(seen[0][0], seen[0][2])  # plain SwAV: every sample its own code


def test_levels_are_averaged():
    model = small_swav()
    views, index = views_and_index(model, b=6)
    one = torch.tensor([[0, 1, 0, 2, 1, 3]])
    two = torch.tensor([[6, 7, 8, 9, 10, 11]])  # a level where nothing is accepted: plain SwAV codes
    a = model.training_loss(views, index, LabelDetector(one), "elimination", 0.1)
    b = model.training_loss(views, index, LabelDetector(two), "elimination", 0.1)
    both = model.training_loss(views, index, LabelDetector(torch.cat([one, two])), "elimination", 0.1)
    assert both.item() == pytest.approx((a.item() + b.item()) / 2, rel=1e-5)


def test_crop_settings_are_checked():
    with pytest.raises(ValueError, match="at least 2 crops"):
        SwAV("convnet4", crop_sizes=(32,), crop_counts=(1,), crop_min_scale=(0.1,), crop_max_scale=(1.0,))
