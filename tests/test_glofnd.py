"""GloFND: the learned threshold is the (1 - alpha) quantile; Adam step; pooling; start epoch; state."""
import pytest
import torch

from ifnd.config import ConfigError, TrainConfig
from ifnd.falseneg import build_detector
from ifnd.falseneg.base import ContrastiveBatch
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.pairs import Pairs

T = 0.2


def batch_from(similarity, anchor_index, positive=None):
    a, c = similarity.shape
    positive = torch.zeros(a, c, dtype=torch.bool) if positive is None else positive
    return ContrastiveBatch(similarity / T, anchor_index, torch.arange(c), Pairs.from_mask(positive),
                            torch.ones(a, c, dtype=torch.bool), T)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_threshold_converges_to_the_quantile_of_a_fixed_distribution(alpha):
    # Each anchor's negatives are fresh draws from its own fixed distribution at every step.
    gen = torch.Generator().manual_seed(0)
    det = GloFNDDetector(4, alpha=alpha, lr=0.01, start_epoch=0)
    low = torch.tensor([-0.8, -0.4, 0.0, 0.3])[:, None]
    width = torch.tensor([0.5, 1.0, 0.6, 0.6])[:, None]
    index = torch.arange(4)
    for epoch in range(1500):  # one step per epoch: each sample is seen once per epoch, as in training
        sims = low + width * torch.rand(4, 400, generator=gen) ** 2  # skewed, bounded in [-1, 1]
        det.false_negatives(batch_from(sims, index))
        det.refresh(epoch + 1, 2000, lambda: None)
    # P(low + width u^2 > q) = 1 - sqrt((q - low) / width) = alpha  <=>  q = low + width (1 - alpha)^2
    quantile = low[:, 0] + width[:, 0] * (1 - alpha) ** 2
    assert det.lam.tolist() == pytest.approx(quantile.tolist(), abs=0.02)
    above = (low + width * torch.rand(4, 20000, generator=gen) ** 2 > det.lam[:, None]).float().mean(1)
    assert above.tolist() == pytest.approx([alpha] * 4, abs=0.02)


def test_first_step_is_one_learning_rate_down_from_one():
    det = GloFNDDetector(10, alpha=0.1, lr=0.05, start_epoch=0)
    sims = torch.rand(2, 6) * 0.5  # all below lambda = 1: g = alpha > 0, Adam's first step is lr * sign(g)
    det.false_negatives(batch_from(sims, torch.tensor([3, 7])))
    assert det.lam[[3, 7]].tolist() == pytest.approx([0.95, 0.95], abs=1e-6)
    untouched = torch.ones(10, dtype=torch.bool)
    untouched[[3, 7]] = False
    assert (det.lam[untouched] == 1).all() and (det.t[untouched] == 0).all()  # only the batch's entries move


def test_views_of_one_sample_pool_into_one_update():
    det = GloFNDDetector(4, alpha=0.5, lr=0.1, start_epoch=0)
    det.lam[:] = 0.0
    sims = torch.tensor([[0.5, 0.5, -0.5, -0.5], [0.5, 0.5, 0.5, -0.5]])  # sample 2 twice: 5 of 8 above 0
    det.false_negatives(batch_from(sims, torch.tensor([2, 2])))
    assert int(det.t[2]) == 1
    g = 0.5 - 5 / 8  # negative gradient: lambda rises by one step
    assert det.lam[2].item() == pytest.approx(0.1 * (-g) / abs(g), abs=1e-6)


def test_nothing_removed_nor_learned_before_the_start_epoch():
    # the authors' scripts: start_update = lda_start (thresholds learn from the epoch masking starts)
    det = GloFNDDetector(6, alpha=0.25, lr=0.5, start_epoch=2)
    sims = torch.linspace(-1, 1, 24).view(4, 6)
    positive = torch.zeros(4, 6, dtype=torch.bool)
    positive[:, 0] = True
    index = torch.arange(4)
    assert det.false_negatives(batch_from(sims, index, positive)) is None
    det.refresh(1, 10, lambda: pytest.fail("GloFND needs no features"))
    assert det.false_negatives(batch_from(sims, index, positive)) is None
    assert (det.lam == 1).all() and (det.t == 0).all()
    det.refresh(2, 10, lambda: None)
    fn = det.false_negatives(batch_from(sims, index, positive)).to_mask(4, 6)[0]
    assert torch.equal(fn, (sims > det.lam[index][:, None]) & ~positive)  # positives are never removed
    assert fn.any() and not fn[:, 0].any()


def test_bias_correction_counts_epochs_as_the_official_code():
    # fnd.py: m_hat = m / (1 - b1^(epoch + 1)), v_hat likewise, whatever the sample's own update count
    det = GloFNDDetector(4, alpha=0.1, lr=0.05, start_epoch=70)
    det.refresh(70, 200, lambda: None)
    det.false_negatives(batch_from(torch.rand(1, 6) * 0.5, torch.tensor([2])))  # all below 1: g = alpha
    m, v = 0.1 * 0.1, 0.02 * 0.1 ** 2
    step = 0.05 * (m / (1 - 0.9 ** 71)) / ((v / (1 - 0.98 ** 71)) ** 0.5 + 1e-8)
    assert det.lam[2].item() == pytest.approx(1 - step, abs=1e-6)
    assert 0.6 * 0.05 < step < 0.65 * 0.05  # ~0.62 lr, not the lr of a bias correction at t = 1


def test_state_round_trip_and_registry():
    cfg = TrainConfig(detector="glofnd", objective="elimination", glofnd_alpha=0.1, glofnd_lr=0.2,
                      glofnd_start_epoch=3, epochs=10, warmup_epochs=0).validate()
    det = build_detector(cfg, torch.arange(20) % 3)
    assert isinstance(det, GloFNDDetector) and det.lam.shape == (20,)
    assert (det.alpha, det.lr, det.start_epoch) == (0.1, 0.2, 3)
    det.false_negatives(batch_from(torch.rand(3, 5), torch.tensor([1, 4, 9])))
    det.refresh(4, 10, lambda: None)
    other = build_detector(cfg, torch.arange(20) % 3)
    other.load_state_dict(det.state_dict())
    assert torch.equal(other.lam, det.lam) and torch.equal(other.t, det.t) and other.epoch == 4 and other.active


@pytest.mark.parametrize("overrides,message", [
    ({"glofnd_alpha": 0.0}, "glofnd_alpha=0.0 must be in \\(0, 1\\)"),
    ({"glofnd_lr": -1.0}, "glofnd_lr=-1.0 must be positive"),
    ({"glofnd_start_epoch": 10}, "glofnd_start_epoch=10 must be in \\[0, epochs=10\\)"),
])
def test_bad_glofnd_settings_fail_early(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(detector="glofnd", objective="elimination", epochs=10, warmup_epochs=0, **overrides).validate()
