"""Incremental false-negative detection (IFND, paper Sec. 3.2 and Algorithm 1).

Every ``refresh_every`` epochs the training set's embeddings are clustered with k-means at each
cluster number (hierarchical levels), each sample gets a confidence, and the ``rate`` fraction
with the highest confidence keeps its cluster index as pseudo label; every other sample keeps a
label of its own (``k + sample index``), so it detects no false negative (Algorithm 1, line 1).

Readings where the paper is ambiguous:

* Ranking is global: exactly ``floor(rate * N)`` samples of the whole training set are accepted
  at each level (Algorithm 1, line 12 "a fraction of y with larger kappa"), not a fraction per
  cluster. Ties are broken by sample index (``tie_break="index"``) or by a random order seeded per
  refresh and level (``"random"``). PCL's Eq. 9 gives every sample of a cluster the same value and
  clips 20% of the clusters to two bounds, so under a partial acceptance whole blocks tie: by index
  the lower dataset indices would win (a class-sorted subset would favour its first classes).
* Sec. 3.2 clusters ``f(i)`` while Eq. 2 and Algorithm 1, line 10 use ``z``; PCL's code, on which
  IFND's is built, clusters the 128-D projection output. ``cluster_on`` in the trainer config
  chooses (default: the projection output); either is L2-normalised first.
* Eq. 2's ``sim`` carries the contrastive temperature; we use the training temperature.
* The acceptance rate after ``e`` of ``E`` epochs is ``e / E`` for the linear scheme
  (Algorithm 1, line 11), scaled between ``initial`` and ``final``. The step scheme switches at
  ``step_at`` of training (Table 6 [c]: epoch 100 of 1000, i.e. 0.1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ifnd.falseneg.base import DetectorSpec, FeatureFn, LabelDetector
from ifnd.falseneg.kmeans import kmeans

SCHEMES = ("constant", "step", "linear")
CONFIDENCES = ("ifnd", "pcl")


@dataclass(frozen=True)
class AcceptanceSchedule:
    """Fraction of pseudo labels accepted after a number of epochs (Table 6 [a]-[g])."""

    scheme: str = "linear"
    initial: float = 0.0
    final: float = 1.0
    step_at: float = 0.1

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown acceptance scheme {self.scheme!r}: choose one of {', '.join(SCHEMES)}")
        for name in ("initial", "final", "step_at"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"acceptance {name}={value} is outside [0, 1]: rates and step_at are fractions")

    def rate(self, epochs_done: int, total_epochs: int) -> float:
        progress = min(max(epochs_done / total_epochs, 0.0), 1.0)
        if self.scheme == "constant":
            return self.initial
        if self.scheme == "step":
            return self.final if progress >= self.step_at else self.initial
        return self.initial + (self.final - self.initial) * progress


def ifnd_confidence(features: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor,
                    temperature: float, chunk: int = 16384) -> torch.Tensor:
    """Eq. 2: softmax over centroids of cosine similarity / T, read at the assigned centroid.

    Rows go in chunks: at ImageNet scale (N = 1.28M, k = 10000) the full N x k matrix is 48 GiB.
    """
    unit_centroids = F.normalize(centroids, dim=1)
    out = []
    for rows, assigned in zip(F.normalize(features, dim=1).split(chunk), labels.split(chunk)):
        logits = rows @ unit_centroids.T / temperature
        out.append((logits.gather(1, assigned[:, None])[:, 0] - logits.logsumexp(dim=1)).exp())
    return torch.cat(out)


def pcl_concentration(features: torch.Tensor, centroids: torch.Tensor, labels: torch.Tensor,
                      temperature: float, alpha: float = 10.0) -> torch.Tensor:
    """PCL's Eq. 9 per cluster: mean distance to the centroid / log(Z + alpha).

    As PCL's official code: clusters of one sample get the largest value, values are clipped to
    the 10th-90th percentile and rescaled to mean ``temperature``.
    """
    k = centroids.shape[0]
    distance = (F.normalize(features, dim=1) - centroids[labels]).norm(dim=1)
    count = torch.bincount(labels, minlength=k).to(features.dtype)
    mean_distance = torch.zeros(k, dtype=features.dtype, device=features.device).index_add_(0, labels, distance)
    phi = mean_distance / count.clamp_min(1) / torch.log(count + alpha)
    phi = torch.where(count > 1, phi, phi[count > 1].max() if (count > 1).any() else phi.new_tensor(1.0))
    low, high = torch.quantile(phi, torch.tensor([0.1, 0.9], dtype=phi.dtype, device=phi.device))
    phi = phi.clamp(low, high)
    return temperature * phi / phi.mean()


def pcl_confidence(features, centroids, labels, temperature):
    """A single confidence per cluster (Table 7 "Eq. 9 in PCL"): tighter clusters rank first."""
    return -pcl_concentration(features, centroids, labels, temperature)[labels]


CONFIDENCE_FNS = {"ifnd": ifnd_confidence, "pcl": pcl_confidence}


def refresh_due(epochs_done: int, total_epochs: int, refresh_every: int) -> bool:
    """IFND's refreshes: after every ``refresh_every`` epochs, none after the last epoch."""
    return epochs_done % refresh_every == 0 and epochs_done < total_epochs


def accept_top(labels: torch.Tensor, confidence: torch.Tensor, rate: float, k: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep the labels of the ``floor(rate * N)`` most confident samples; others get ``k + index``.

    Equal confidences rank by sample index, or in the random order of ``generator`` when given.
    """
    n = labels.shape[0]
    accepted = int(rate * n + 1e-9)
    if generator is None:
        order = torch.sort(-confidence, stable=True).indices
    else:
        shuffle = torch.randperm(n, generator=generator).to(confidence.device)
        order = shuffle[torch.sort(-confidence[shuffle], stable=True).indices]
    out = k + torch.arange(n, device=labels.device)
    keep = order[:accepted]
    out[keep] = labels[keep]
    return out


class ScheduledDetector(LabelDetector):
    """A detector whose labels are accepted under IFND's schedule: it refreshes after every ``refresh_every``
    epochs, and its checkpoint state is the accepted labels and the acceptance rate."""

    def __init__(self, labels: torch.Tensor, schedule: AcceptanceSchedule, refresh_every: int):
        if refresh_every < 1:
            raise ValueError(f"refresh_every={refresh_every} must be at least 1 epoch")
        super().__init__(labels)
        self.schedule, self.refresh_every, self.rate = schedule, refresh_every, 0.0

    def refresh_due(self, epochs_done: int, total_epochs: int) -> bool:
        return refresh_due(epochs_done, total_epochs, self.refresh_every)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "rate": self.rate}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rate = state["rate"]


class IncrementalDetector(ScheduledDetector):
    """IFND's detector: k-means pseudo labels accepted by confidence under a schedule."""

    name = "ifnd"

    def __init__(self, num_samples: int, cluster_numbers: list[int], schedule: AcceptanceSchedule,
                 refresh_every: int, temperature: float, confidence: str = "ifnd", seed: int = 0,
                 kmeans_backend: str = "auto", kmeans_redo: int = 1, kmeans_seed: str = "refresh",
                 tie_break: str = "index"):
        if confidence not in CONFIDENCES:
            raise ValueError(f"unknown confidence {confidence!r}: choose one of {', '.join(CONFIDENCES)}")
        too_big = [k for k in cluster_numbers if not 1 <= k <= num_samples]
        if too_big or not cluster_numbers:
            raise ValueError(
                f"cluster numbers {list(cluster_numbers)} do not fit {num_samples} training samples: "
                f"each k must be between 1 and {num_samples}"
            )
        self.cluster_numbers = list(cluster_numbers)
        super().__init__(self._unique_labels(num_samples), schedule, refresh_every)
        self.temperature = temperature
        self.confidence = confidence
        self.seed = seed
        self.kmeans_backend = kmeans_backend
        self.kmeans_redo, self.kmeans_seed, self.tie_break = kmeans_redo, kmeans_seed, tie_break
        self.assignments: list[torch.Tensor] = []

    def _unique_labels(self, num_samples: int) -> torch.Tensor:
        """Every sample its own label at every level: instance-level learning (Algorithm 1, line 1)."""
        return torch.stack([k + torch.arange(num_samples) for k in self.cluster_numbers])

    def refresh(self, epochs_done: int, total_epochs: int, features: FeatureFn) -> dict:
        self.rate = self.schedule.rate(epochs_done, total_epochs)
        if self.rate == 0.0:
            self.labels = self._unique_labels(self.labels.shape[1])
            self.assignments = []
            self._on_clustering(None)
            return {"acceptance_rate": 0.0}
        feats = F.normalize(features().float(), dim=1)
        levels, clusterings = [], []
        for level, k in enumerate(self.cluster_numbers):
            refresh_seed = self.seed + 1000 * epochs_done + level
            centroids, assigned = kmeans(feats, k, seed=level if self.kmeans_seed == "level" else refresh_seed,
                                         backend=self.kmeans_backend, redo=self.kmeans_redo)
            confidence = CONFIDENCE_FNS[self.confidence](feats, centroids, assigned, self.temperature)
            ties = torch.Generator().manual_seed(refresh_seed) if self.tie_break == "random" else None
            levels.append(accept_top(assigned, confidence, self.rate, k, ties).cpu())
            clusterings.append((centroids, assigned))
        self.labels = torch.stack(levels)
        self.assignments = [assigned.cpu() for _, assigned in clusterings]
        self._on_clustering((feats, clusterings))
        return {"acceptance_rate": self.rate}

    def cluster_assignments(self) -> list[torch.Tensor]:
        return self.assignments

    def _on_clustering(self, result: tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None) -> None:
        """Hook for subclasses (PCL's prototypes): ``(features, [(centroids, assignment)] per level)``,
        or ``None`` when no label is accepted (instance-level phase)."""


SCHEDULE_FIELDS = ("refresh_every", "acceptance_scheme", "acceptance_initial", "acceptance_final", "acceptance_step_at")
CLUSTERING_FIELDS = ("cluster_numbers", *SCHEDULE_FIELDS, "confidence", "cluster_on", "cluster_features",
                     "kmeans_backend", "kmeans_redo", "kmeans_seed", "tie_break")


def schedule_of(cfg) -> AcceptanceSchedule:
    """The acceptance schedule of a config's ``acceptance_*`` fields."""
    return AcceptanceSchedule(cfg.acceptance_scheme, cfg.acceptance_initial, cfg.acceptance_final,
                              cfg.acceptance_step_at)


def clustering_arguments(cfg, true_labels: torch.Tensor) -> tuple:
    """The positional arguments of :class:`IncrementalDetector` (and PCL's detector) from a config."""
    return (true_labels.shape[0], cfg.cluster_numbers, schedule_of(cfg), cfg.refresh_every, cfg.temperature,
            cfg.confidence, cfg.seed, cfg.kmeans_backend, cfg.kmeans_redo, cfg.kmeans_seed, cfg.tie_break)


def clustering_problem(cfg) -> str | None:
    if cfg.cluster_features == "bank" and cfg.cluster_on != "projection":
        return ("cluster_features='bank' keeps the projections z the training steps compute, so it needs "
                "cluster_on='projection' (or use cluster_features='extract' for backbone features)")
    return None


SPEC = DetectorSpec("ifnd", lambda cfg, true_labels: IncrementalDetector(*clustering_arguments(cfg, true_labels)),
                    "IFND: k-means pseudo labels at each cluster number, accepted incrementally (Sec. 3.2)",
                    refreshes=True, fields=CLUSTERING_FIELDS, check=clustering_problem)
