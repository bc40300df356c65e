"""k-means on L2-normalised features: faiss when installed (as the paper, Sec. 4.1), else torch.

Both backends run Lloyd's algorithm on the unit sphere's Euclidean distances with centroids
initialised from a seeded random sample of the points; faiss is the reference (paper: "k-means
clustering implemented by Johnson et al. (2019)"), the torch backend exists for machines
without faiss (e.g. a GPU image without faiss-gpu) and gives the same kind of result.

``redo`` runs k-means that many times from different initialisations and keeps the run of lowest
inertia (faiss ``nredo``; PCL's ``run_kmeans`` uses 5, ``main_pcl.py`` line 422). PCL also sets
``min_points_per_centroid = 10`` (line 425); faiss uses it only to print a warning when there are
fewer than ``10 k`` points, the clustering is the same (``tests/test_baselines.py``), so we keep 1
and spare small runs the warning.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch
import torch.nn.functional as F

KMEANS_ITERATIONS = 20  # PCL's run_kmeans (the code IFND builds on) uses 20 iterations


class ClusteringError(ValueError):
    pass


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def kmeans(
    features: torch.Tensor, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS,
    backend: str = "auto", redo: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the unit-normalised rows of ``features`` into ``k`` groups.

    Returns (centroids [k, D], labels [N]); centroids are the cluster means (not re-normalised:
    PCL's concentration, Eq. 9 of PCL, is measured from them).
    """
    n = features.shape[0]
    if redo < 1:
        raise ClusteringError(f"k-means redo={redo}: run it at least once (PCL: 5)")
    if k < 1 or k > n:
        raise ClusteringError(
            f"cannot make k={k} clusters from {n} samples: choose cluster numbers between 1 and {n} "
            "(the paper uses k in {10, 30, 100} for CIFAR-10, {1000, 3000, 10000} for ImageNet)"
        )
    x = F.normalize(features.float(), dim=1)
    if backend == "auto":
        backend = "faiss" if faiss_available() and x.device.type == "cpu" else "torch"
    if backend == "faiss":
        centroids, labels = _faiss_kmeans(x, k, seed, iterations, redo)
    elif backend == "torch":
        centroids, labels, best = None, None, float("inf")
        for attempt in range(redo):
            run = _torch_kmeans(x, k, seed + attempt, iterations)
            if (loss := float(inertia(x, *run))) < best:
                (centroids, labels), best = run, loss
    else:
        raise ClusteringError(f"unknown k-means backend {backend!r}: use 'auto', 'faiss' or 'torch'")
    return centroids, labels


def inertia(x: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of squared distances of the points to their centroids (what ``redo`` minimises)."""
    return sum(((part - centroids[at]) ** 2).sum() for part, at in zip(x.split(65536), labels.split(65536)))


def _faiss_kmeans(x: torch.Tensor, k: int, seed: int, iterations: int, redo: int):
    import faiss

    data = np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)
    clus = faiss.Clustering(data.shape[1], k)
    clus.niter = iterations
    clus.seed = seed
    clus.nredo = redo
    clus.max_points_per_centroid = 1000  # PCL's setting: subsample at most 1000 points per centroid
    clus.min_points_per_centroid = 1
    clus.verbose = False
    index = faiss.IndexFlatL2(data.shape[1])
    clus.train(data, index)
    _, assignment = index.search(data, 1)
    centroids = faiss.vector_to_array(clus.centroids).reshape(k, -1)
    return torch.from_numpy(centroids).to(x.device), torch.from_numpy(assignment[:, 0]).long().to(x.device)


def _torch_kmeans(x: torch.Tensor, k: int, seed: int, iterations: int):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    centroids = x[torch.randperm(x.shape[0], generator=gen)[:k].to(x.device)].clone()
    for _ in range(iterations + 1):
        labels = _nearest(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).unsqueeze(1).to(x.dtype)
        empty = counts[:, 0] == 0
        centroids = torch.where(empty.unsqueeze(1), centroids, sums / counts.clamp_min(1))
    return centroids, _nearest(x, centroids)


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    c_sq = (centroids * centroids).sum(1)
    return torch.cat([(c_sq - 2 * part @ centroids.T).argmin(1) for part in x.split(chunk)])
