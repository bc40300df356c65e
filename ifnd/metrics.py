"""Metrics the trainer monitors; ``eval`` builds its stand-alone protocols on them.

They live here, not in ``eval``, because the trainer logs them every epoch and ``ifnd`` does not
import ``eval`` (the layers of docs/design.md).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import normalized_mutual_info_score

from ifnd.falseneg.kmeans import kmeans

KNN_K, KNN_T = 200, 0.1  # the weighted kNN monitor of InstDisc (Wu et al., 2018) as used by MoCo/PCL


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                num_classes: int, k: int = KNN_K, temperature: float = KNN_T, chunk: int = 1024) -> torch.Tensor:
    """Weighted kNN: each of the ``k`` nearest (cosine) training samples votes ``exp(s / T)``."""
    train = F.normalize(train_features.float(), dim=1)
    k = min(k, train.shape[0])
    predictions = []
    for part in F.normalize(test_features.float(), dim=1).split(chunk):
        sims, idx = (part @ train.T).topk(k, dim=1)
        votes = torch.zeros(part.shape[0], num_classes, dtype=sims.dtype, device=sims.device)
        votes.scatter_add_(1, train_labels.to(idx.device)[idx], (sims / temperature).exp())
        predictions.append(votes.argmax(1))
    return torch.cat(predictions)


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = KNN_K,
                 temperature: float = KNN_T) -> float:
    """Top-1 accuracy (%) of the weighted kNN classifier."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return 100.0 * (pred.cpu() == test_labels.cpu()).float().mean().item()


def mtpr_mtnr(pseudo_labels: np.ndarray | torch.Tensor, true_labels: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """Mean true positive / negative rate (%) of a pseudo labelling (paper Sec. 4.4).

    For anchor ``i`` the actual positives are the other samples of its true class and the
    actual negatives the samples of other classes. ``TPR_i`` is the fraction of actual positives
    sharing ``i``'s pseudo label (detected as false negatives); ``TNR_i`` the fraction of actual
    negatives not sharing it. MTPR / MTNR average over all anchors (every sample once); anchors
    alone in their class are left out of MTPR. Computed exactly from the contingency table,
    O(N + classes x clusters): ``TP_i = n[c_i, p_i] - 1``, ``FP_i = n[p_i] - n[c_i, p_i]``.
    Instance-level learning (all labels unique) gives MTPR 0 and MTNR 100.
    """
    pseudo = np.unique(np.asarray(pseudo_labels), return_inverse=True)[1].ravel()
    true = np.unique(np.asarray(true_labels), return_inverse=True)[1].ravel()
    n = true.shape[0]
    joint = np.zeros((true.max() + 1, pseudo.max() + 1), dtype=np.int64)
    np.add.at(joint, (true, pseudo), 1)
    n_class, n_cluster, n_joint = joint.sum(1)[true], joint.sum(0)[pseudo], joint[true, pseudo]
    has_positive = n_class > 1
    tpr = (n_joint[has_positive] - 1) / (n_class[has_positive] - 1)
    has_negative = n_class < n
    tnr = 1 - (n_cluster[has_negative] - n_joint[has_negative]) / (n - n_class[has_negative])
    return 100.0 * float(tpr.mean()) if tpr.size else 0.0, 100.0 * float(tnr.mean()) if tnr.size else 100.0


def pair_mtpr_mtnr(detects, true_labels, chunk: int = 1024) -> tuple[float, float]:
    """:func:`mtpr_mtnr` of a detection given pair by pair: ``detects(rows)`` is ``[len(rows), N]``, True where
    it calls sample ``j`` a false negative of sample ``rows[i]`` (the sample itself is ignored).

    The same definitions (anchors alone in their class left out of MTPR), computed over anchor chunks:
    O(N^2) work, O(chunk * N) memory.
    """
    labels = torch.as_tensor(np.asarray(true_labels)).long().view(-1)
    n = labels.numel()
    n_class = torch.bincount(labels)[labels]
    tpr, tnr = [], []
    for rows in torch.arange(n).split(chunk):
        detected = detects(rows).to(torch.bool).cpu().clone()
        detected[torch.arange(len(rows)), rows] = False
        same = labels[rows][:, None] == labels[None, :]
        positives, negatives = n_class[rows] - 1, n - n_class[rows]
        tp, fp = (detected & same).sum(1).double(), (detected & ~same).sum(1).double()
        tpr.append(tp[positives > 0] / positives[positives > 0])
        tnr.append(1 - fp[negatives > 0] / negatives[negatives > 0])
    tpr, tnr = torch.cat(tpr), torch.cat(tnr)
    return (100.0 * float(tpr.mean()) if tpr.numel() else 0.0,
            100.0 * float(tnr.mean()) if tnr.numel() else 100.0)


def nmi(true_labels, cluster_labels) -> float:
    """NMI (%) of Strehl & Ghosh (2002): mutual information over the geometric mean of the entropies."""
    return 100.0 * normalized_mutual_info_score(np.asarray(true_labels), np.asarray(cluster_labels),
                                                average_method="geometric")


def kmeans_nmi(features: torch.Tensor, true_labels, k: int | None = None, seeds: int = 5,
               backend: str = "auto") -> tuple[float, float]:
    """Table 4's protocol: k-means (k = number of classes) ``seeds`` times; NMI mean and std (%).

    NMI as :func:`nmi`.
    """
    true = np.asarray(true_labels)
    k = k or len(np.unique(true))
    scores = [nmi(true, kmeans(features, k, seed=seed, backend=backend)[1].cpu().numpy()) for seed in range(seeds)]
    return float(np.mean(scores)), float(np.std(scores))
