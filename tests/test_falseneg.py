"""Incremental detection: schedules, confidence, acceptance, k-means backends."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score

from ifnd.falseneg.base import ContrastiveBatch
from ifnd.pairs import Pairs
from ifnd.falseneg.incremental import (AcceptanceSchedule, IncrementalDetector, accept_top, ifnd_confidence,
                                       pcl_concentration)
from ifnd.falseneg.kmeans import ClusteringError, faiss_available, kmeans


def blobs(n_per=50, k=4, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, d, generator=gen), dim=1) * 5
    x = torch.cat([c + 0.3 * torch.randn(n_per, d, generator=gen) for c in centres])
    return x, torch.arange(k).repeat_interleave(n_per)


@pytest.mark.parametrize("scheme,expected", [
    ("constant", [0.3, 0.3, 0.3]),
    ("step", [0.3, 0.9, 0.9]),
    ("linear", [0.3, 0.3 + 0.6 * 0.5, 0.9]),
])
def test_acceptance_schedules(scheme, expected):
    schedule = AcceptanceSchedule(scheme, initial=0.3, final=0.9, step_at=0.5)
    assert [schedule.rate(e, 10) for e in (0, 5, 10)] == pytest.approx(expected)


def test_linear_schedule_is_algorithm_1():
    schedule = AcceptanceSchedule("linear", 0.0, 1.0)
    assert [schedule.rate(e, 200) for e in (1, 100, 200)] == pytest.approx([1 / 200, 0.5, 1.0])


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_rate_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        AcceptanceSchedule("linear", 0.0, bad)


def test_accept_top_takes_exactly_the_most_confident():
    labels = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0, 2, 1])
    confidence = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.95, 0.5, 0.6, 0.4])
    out = accept_top(labels, confidence, 0.35, k=3)
    accepted = out < 3
    assert accepted.sum() == 3
    assert set(torch.nonzero(accepted).flatten().tolist()) == {0, 2, 6}
    assert torch.equal(out[accepted], labels[accepted])
    assert len(set(out[~accepted].tolist())) == int((~accepted).sum())  # unaccepted: unique labels


def test_ifnd_confidence_is_softmax_of_cosines():
    feats, centroids = torch.randn(7, 5), torch.randn(3, 5)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    cos = F.normalize(feats, dim=1) @ F.normalize(centroids, dim=1).T
    expected = torch.exp(cos / 0.2) / torch.exp(cos / 0.2).sum(1, keepdim=True)
    assert torch.allclose(ifnd_confidence(feats, centroids, labels, 0.2), expected[torch.arange(7), labels], atol=1e-6)


def test_pcl_concentration_on_hand_made_clusters():
    # Ten clusters of 3 unit points at growing spread; concentration grows with the spread.
    feats, labels, centroids = [], [], []
    for c in range(10):
        base = F.normalize(torch.randn(8, generator=torch.Generator().manual_seed(c)), dim=0)
        pts = F.normalize(base + (c + 1) * 0.02 * torch.randn(3, 8, generator=torch.Generator().manual_seed(50 + c)), dim=1)
        feats.append(pts)
        labels += [c] * 3
        centroids.append(pts.mean(0))
    feats, labels, centroids = torch.cat(feats), torch.tensor(labels), torch.stack(centroids)
    phi = pcl_concentration(feats, centroids, labels, temperature=0.2)
    raw = torch.stack([(feats[labels == c] - centroids[c]).norm(dim=1).mean() / np.log(3 + 10) for c in range(10)])
    low, high = torch.quantile(raw, torch.tensor([0.1, 0.9]))
    expected = raw.clamp(low, high)
    assert torch.allclose(phi, 0.2 * expected / expected.mean(), atol=1e-5)
    assert phi.mean().item() == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if faiss_available() else []))
def test_kmeans_recovers_separated_clusters(backend):
    x, truth = blobs()
    centroids, labels = kmeans(x, 4, seed=0, backend=backend)
    assert centroids.shape == (4, 16)
    assert normalized_mutual_info_score(truth.numpy(), labels.numpy()) == pytest.approx(1.0)


def test_kmeans_with_more_clusters_than_samples_fails_clearly():
    with pytest.raises(ClusteringError, match="k=20 clusters from 10 samples"):
        kmeans(torch.randn(10, 4), 20)


def test_detector_before_acceptance_is_instance_level():
    x, _ = blobs()
    det = IncrementalDetector(len(x), [4, 8], AcceptanceSchedule("linear"), refresh_every=1, temperature=0.2)
    det.refresh(0, 10, lambda: x)
    labels = det.level_labels()
    assert labels.shape == (2, len(x)) and all(len(set(level.tolist())) == len(x) for level in labels)


def test_detector_refresh_accepts_and_detects():
    x, truth = blobs()
    det = IncrementalDetector(len(x), [4], AcceptanceSchedule("constant", 1.0, 1.0), refresh_every=2, temperature=0.2)
    assert det.refresh_due(2, 10) and not det.refresh_due(3, 10) and not det.refresh_due(10, 10)
    det.refresh(2, 10, lambda: x)
    labels = det.level_labels()[0]
    assert normalized_mutual_info_score(truth.numpy(), labels.numpy()) == pytest.approx(1.0)
    index = torch.tensor([0, 1, 60, 61])
    batch = ContrastiveBatch(torch.zeros(4, 4), index, index, Pairs.from_mask(torch.zeros(4, 4, dtype=torch.bool)),
                             torch.ones(4, 4, dtype=torch.bool), 0.2)
    fn = det.false_negatives(batch).to_mask(4, 4)[0]
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(fn, expected)


def test_detector_state_round_trip():
    x, _ = blobs()
    det = IncrementalDetector(len(x), [4], AcceptanceSchedule("linear"), refresh_every=1, temperature=0.2)
    det.refresh(5, 10, lambda: x)
    other = IncrementalDetector(len(x), [4], AcceptanceSchedule("linear"), refresh_every=1, temperature=0.2)
    other.load_state_dict(det.state_dict())
    assert torch.equal(other.level_labels(), det.level_labels()) and other.rate == det.rate == 0.5


def test_detector_rejects_too_many_clusters():
    with pytest.raises(ValueError, match="do not fit 10 training samples"):
        IncrementalDetector(10, [5, 100], AcceptanceSchedule(), refresh_every=1, temperature=0.2)


def test_ifnd_confidence_in_chunks_equals_one_pass():
    feats, centroids = torch.randn(50, 6), torch.randn(4, 6)
    labels = torch.randint(0, 4, (50,))
    assert torch.allclose(ifnd_confidence(feats, centroids, labels, 0.2, chunk=7),
                          ifnd_confidence(feats, centroids, labels, 0.2, chunk=1000), atol=1e-6)
