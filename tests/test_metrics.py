"""Monitoring metrics against brute force and scikit-learn."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score

from ifnd.metrics import kmeans_nmi, knn_predict, mtpr_mtnr


def brute_force_rates(pseudo, true):
    n = len(true)
    tprs, tnrs = [], []
    for i in range(n):
        pos = [j for j in range(n) if j != i and true[j] == true[i]]
        neg = [j for j in range(n) if true[j] != true[i]]
        if pos:
            tprs.append(np.mean([pseudo[j] == pseudo[i] for j in pos]))
        if neg:
            tnrs.append(np.mean([pseudo[j] != pseudo[i] for j in neg]))
    return 100 * np.mean(tprs), 100 * np.mean(tnrs)


@pytest.mark.parametrize("seed", range(5))
def test_mtpr_mtnr_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, 60)
    pseudo = rng.integers(0, 6, 60)
    pseudo[rng.random(60) < 0.3] = 100 + np.arange(60)[rng.random(60) < 0.3][:1].sum()  # a big shared cluster
    assert mtpr_mtnr(pseudo, true) == pytest.approx(brute_force_rates(pseudo, true))


def test_instance_level_gives_zero_and_hundred():
    true = np.repeat(np.arange(5), 10)
    assert mtpr_mtnr(np.arange(50), true) == (0.0, 100.0)
    assert mtpr_mtnr(true, true) == (100.0, 100.0)


def test_knn_predict_equals_loop():
    gen = torch.Generator().manual_seed(0)
    train, test = torch.randn(40, 6, generator=gen), torch.randn(7, 6, generator=gen)
    labels = torch.randint(0, 3, (40,), generator=gen)
    pred = knn_predict(train, labels, test, num_classes=3, k=5, temperature=0.1)
    tr, te = F.normalize(train, dim=1), F.normalize(test, dim=1)
    for i in range(7):
        sims = tr @ te[i]
        top = sims.argsort(descending=True)[:5]
        votes = np.zeros(3)
        for j in top:
            votes[labels[j]] += float(torch.exp(sims[j] / 0.1))
        assert pred[i].item() == votes.argmax()


def test_kmeans_nmi_uses_strehl_ghosh_nmi():
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 8, generator=gen) * 6
    feats = torch.cat([c + torch.randn(30, 8, generator=gen) for c in centres])
    truth = np.repeat(np.arange(3), 30)
    mean, std = kmeans_nmi(feats, truth, seeds=3, backend="torch")
    assert mean == pytest.approx(100.0) and std == pytest.approx(0.0)
    noisy = truth.copy()
    noisy[:10] = 1
    from ifnd.falseneg.kmeans import kmeans
    labels = kmeans(feats, 3, seed=0, backend="torch")[1].numpy()
    expected = 100 * normalized_mutual_info_score(noisy, labels, average_method="geometric")
    assert kmeans_nmi(feats, noisy, k=3, seeds=1, backend="torch")[0] == pytest.approx(expected)
