"""PCL's detector: ProtoNCE against a brute-force per-sample formula; negatives; warm-up; concentration."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ifnd.config import ConfigError, TrainConfig, current_fields, mode_settings, recorded_fields
from ifnd.falseneg.base import ContrastiveBatch
from ifnd.pairs import Pairs
from ifnd.falseneg.incremental import AcceptanceSchedule, pcl_concentration
from ifnd.falseneg.pcl import PrototypeDetector, prototype_logits
from ifnd.frameworks.simclr import SimCLR

T = 0.2


def detector_with(labels, centroids, phi, negatives=-1):
    det = PrototypeDetector(labels.shape[1], [c.shape[0] for c in centroids], AcceptanceSchedule("step"), 1, T,
                            negatives=negatives)
    det.labels, det.centroids, det.phi = labels, centroids, phi
    return det


def brute_force_prototype_term(z, anchor_index, labels, centroids, phi):
    """PCL's prototype term written per anchor: own prototype vs the batch's others + all free clusters."""
    levels = []
    for level, (cent, ph) in enumerate(zip(centroids, phi)):
        k = cent.shape[0]
        accepted = [a for a in range(len(anchor_index)) if labels[level, anchor_index[a]] < k]
        samples = sorted({int(anchor_index[a]) for a in accepted})
        own = [int(labels[level, s]) for s in samples]
        columns = own + [c for c in range(k) if c not in own]
        total = 0.0
        for a in accepted:
            logits = [float(z[a] @ cent[c]) / float(ph[c]) for c in columns]
            target = samples.index(int(anchor_index[a]))
            total += -(logits[target] - math.log(sum(math.exp(x) for x in logits)))
        levels.append(total / len(anchor_index))
    return sum(levels) / len(levels)


def random_state(seed=0, n=12, ks=(6, 4), d=8):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.stack([torch.randint(0, k, (n,), generator=gen) for k in ks])
    labels[0, [1, 5]] = ks[0] + torch.tensor([1, 5])  # two samples not accepted at level 0
    centroids = [F.normalize(torch.randn(k, d, generator=gen), dim=1) for k in ks]
    phi = [0.1 + torch.rand(k, generator=gen) * 0.3 for k in ks]
    return labels, centroids, phi


def test_prototype_term_matches_brute_force():
    labels, centroids, phi = random_state()
    index = torch.tensor([0, 1, 2, 5, 7]).repeat(2)  # SimCLR: two anchors per sample
    z = F.normalize(torch.randn(10, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    det = detector_with(labels, centroids, phi)
    batch = ContrastiveBatch(torch.zeros(10, 10), index, index, Pairs.from_mask(torch.zeros(10, 10, dtype=torch.bool)),
                             torch.ones(10, 10, dtype=torch.bool), T, anchor_embedding=z)
    expected = brute_force_prototype_term(z, index, labels, centroids, phi)
    assert det.extra_loss(batch).item() == pytest.approx(expected, rel=1e-5)
    assert det.false_negatives(batch) is None  # ProtoNCE's instance term removes nothing


def test_protonce_on_simclr_is_infonce_plus_prototype_term():
    torch.manual_seed(0)
    model = SimCLR("convnet4").eval()
    views = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(v)) for v in range(2)]
    index = torch.tensor([0, 2, 3, 7])
    labels, centroids, phi = random_state(d=128)
    det = detector_with(labels, centroids, phi)
    loss = model.training_loss(views, index, det, "instance", T)
    z = F.normalize(model.encoder(torch.cat(views)), dim=1).detach()
    info = 0.0
    for a in range(8):
        other = (a + 4) % 8
        denominator = sum(math.exp(float(z[a] @ z[c]) / T) for c in range(8) if c != a)
        info += -(float(z[a] @ z[other]) / T - math.log(denominator))
    expected = info / 8 + brute_force_prototype_term(z, index.repeat(2), labels, centroids, phi)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_negatives_are_r_free_clusters_drawn_without_replacement():
    k = 10
    centroids, phi = torch.eye(k), torch.ones(k)
    embedding = torch.arange(1, k + 1).float().repeat(3, 1)  # logit of column c is c + 1: columns readable
    assignment = torch.tensor([2, 2, 7, 0, 4])
    logits, target, used = prototype_logits(embedding, torch.tensor([0, 1, 2]), assignment, centroids, phi, 4,
                                            torch.Generator().manual_seed(0))
    columns = (logits[0] - 1).long().tolist()
    # one column per distinct sample (samples 0 and 1 share cluster 2, as PCL's pos_prototypes), then r free ones
    assert columns[:3] == [2, 2, 7] and target.tolist() == [0, 1, 2] and used.all()
    negatives = columns[3:]
    assert len(negatives) == 4 == len(set(negatives)) and not {2, 7} & set(negatives)
    with pytest.raises(ValueError, match="pcl_negatives r=9 must be smaller than k=10 clusters"):
        prototype_logits(embedding, torch.tensor([0, 1, 2]), assignment, centroids, phi, 9)


def test_impossible_r_is_a_config_error():
    with pytest.raises(ConfigError, match="pcl_negatives r=16000 must be smaller than k=1000 clusters minus the "
                                          "batch size 256, i.e. at most 744"):
        TrainConfig(detector="pcl", pcl_negatives=16000, cluster_numbers=[1000, 3000], batch_size=256).validate()
    TrainConfig(detector="pcl", pcl_negatives=744, cluster_numbers=[1000, 3000], batch_size=256).validate()


def test_pcl_is_a_detector_of_the_instance_objective_recorded_as_protonce():
    """PCL runs were recorded as detector ifnd + objective protonce: old configs load, identities keep those fields."""
    assert mode_settings("pcl")["detector"] == "pcl" and mode_settings("pcl")["objective"] == "instance"
    old = {"detector": "ifnd", "objective": "protonce", "confidence": "pcl"}
    cfg = TrainConfig.from_dict(old).validate()
    assert (cfg.detector, cfg.objective, cfg.confidence) == ("pcl", "instance", "pcl")
    assert recorded_fields(cfg.to_dict())["objective"] == "protonce"
    assert recorded_fields(cfg.to_dict())["detector"] == "ifnd"
    assert current_fields(recorded_fields(cfg.to_dict())) == cfg.to_dict()
    assert recorded_fields({"detector": "ifnd", "objective": "elimination"}) == {"detector": "ifnd",
                                                                                  "objective": "elimination"}
    with pytest.raises(ConfigError, match="detector 'pcl' serves objective instance, not 'elimination'"):
        TrainConfig(detector="pcl", objective="elimination").validate()
    with pytest.raises(ConfigError, match="detector 'pcl' adds a loss on the anchors' embeddings.*--framework "
                                          "simclr / moco"):
        TrainConfig(detector="pcl", framework="swav", swav_queue_size=0).validate()


def test_warm_up_has_no_prototypes_then_every_label_counts():
    x = F.normalize(torch.randn(40, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    det = PrototypeDetector(40, [4, 8], AcceptanceSchedule("step", 0.0, 1.0, 0.5), 1, T)
    index = torch.arange(6)
    batch = ContrastiveBatch(torch.zeros(6, 6), index, index, Pairs.from_mask(torch.zeros(6, 6, dtype=torch.bool)),
                             torch.ones(6, 6, dtype=torch.bool), T, anchor_embedding=x[:6])
    det.refresh(2, 10, lambda: x)
    assert det.centroids == [] and det.extra_loss(batch) == 0.0
    det.refresh(5, 10, lambda: x)
    assert [c.shape for c in det.centroids] == [(4, 16), (8, 16)]
    assert all((det.level_labels()[level] < k).all() for level, k in enumerate([4, 8]))
    assert det.extra_loss(batch).item() > 0
    for c, p in zip(det.centroids, det.phi):
        assert torch.allclose(c.norm(dim=1), torch.ones(len(c))) and p.mean().item() == pytest.approx(T, rel=1e-5)
    other = PrototypeDetector(40, [4, 8], AcceptanceSchedule("step", 0.0, 1.0, 0.5), 1, T)
    other.load_state_dict(det.state_dict())
    assert torch.equal(other.phi[1], det.phi[1]) and torch.equal(other.centroids[0], det.centroids[0])
    assert other.extra_loss(batch).item() == pytest.approx(det.extra_loss(batch).item())  # same generator state


def test_concentration_of_a_single_sample_cluster_is_the_largest():
    # Clusters on the unit circle: points at +-angle around a direction; the mean is the centroid.
    angles, feats, labels, centroids = [0.05, 0.1, 0.2, 0.3, 0.4], [], [], []
    for c, a in enumerate(angles):
        base = 2 * math.pi * c / 6
        pts = torch.tensor([[math.cos(base + s * a), math.sin(base + s * a)] for s in (-1, 1)])
        feats.append(pts), labels.extend([c, c]), centroids.append(pts.mean(0))
    single = torch.tensor([[math.cos(5.5), math.sin(5.5)]])
    feats.append(single), labels.append(5), centroids.append(single[0])
    feats, labels, centroids = torch.cat(feats), torch.tensor(labels), torch.stack(centroids)
    phi = pcl_concentration(feats, centroids, labels, temperature=1.0)
    raw = np.array([math.sin(a) / math.log(2 + 10) for a in angles])  # distance to the chord's midpoint
    raw = np.append(raw, raw.max())                                  # the singleton takes the largest
    raw = raw.clip(np.percentile(raw, 10), np.percentile(raw, 90))
    assert phi.numpy() == pytest.approx(raw / raw.mean(), rel=1e-4)
