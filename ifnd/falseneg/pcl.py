"""PCL's ProtoNCE (Li et al., 2021, ICLR) on the suite's clustering detector, and Table 7's grid.

``L_ProtoNCE = L_InfoNCE + 1/M sum_m L_proto,m`` (PCL Eq. 11 as in its official code,
salesforce/PCL ``pcl/builder.py`` + ``main_pcl.py``). For clustering level ``m`` with unit
centroids ``c`` and per-cluster concentrations ``phi`` (PCL Eq. 9, ``pcl_concentration``):

* the columns are the prototypes of the batch's samples (one per distinct sample, PCL's
  ``pos_prototypes``) followed by ``r`` negative prototypes sampled without replacement from the
  clusters that **no** sample of the batch is assigned to (PCL: ``set(all) - set(pos_proto_id)``);
* logits ``z_a . c_col / phi_col``; cross-entropy to the anchor's own sample's column, so the other
  batch samples' prototypes are negatives too, exactly as PCL's ``labels_proto = arange(B)``;
* averaged over the anchors, then over levels (``loss_proto /= len(num_cluster)``).

The instance term is the masked kernel with the instance masks (objective ``protonce`` removes
nothing), so ProtoNCE runs on SimCLR (Table 7: 2B anchors, two views of a sample share its column)
and on MoCo v2 (Table 1: the queries are the anchors, as PCL).

Readings and choices:

* **Warm-up** without prototypes is the acceptance schedule's rate-0 phase: PCL's 20 of 200 epochs
  (``warmup_epoch``) is the ``step`` scheme with ``step_at = 0.1``, after which all labels count.
* With a **partial acceptance** (``linear`` scheme, Table 7's "PCL + Linear" / "IFND + ProtoNCE"
  rows), only anchors with an accepted pseudo label have a prototype; their cross-entropy is summed
  and divided by the number of all anchors, so the prototype term grows with the acceptance rate
  (at rate 1 it is PCL's mean). Negatives exclude the clusters of the accepted batch samples.
* ``r`` (``pcl_negatives``): PCL draws ``r`` = 16384 (its queue size) with k >= 25000. ``-1`` draws
  every available cluster, at most 16384; a fixed ``r`` must leave room for the worst batch
  (``r <= k - batch size``), otherwise PCL's ``random.sample`` would fail -- the config rejects it.
  With few clusters (Table 7's {1, 3, 10} x 100 at batch 1024) no cluster is free of batch samples
  and only the batch's own prototypes are negatives.
* Centroids are L2-normalised for the logits (as PCL); ``phi`` comes from the unnormalised k-means
  centroids and is rescaled to mean ``temperature`` (``pcl_concentration``, PCL's ``run_kmeans``).
* The confidence that ranks pseudo labels (``confidence=ifnd`` Eq. 2 or ``pcl`` Eq. 9) is a separate
  switch; ``phi`` always follows PCL's Eq. 9.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ifnd.falseneg.base import ContrastiveBatch, Detector
from ifnd.falseneg.incremental import IncrementalDetector, pcl_concentration

PCL_R = 16384  # PCL's default r (pcl_r = queue size) on ImageNet
# PCL's run_kmeans (main_pcl.py lines 415-425): 5 restarts, the seed of each level its index (the same in
# every epoch); equal Eq. 9 confidences (whole clusters, and the clipped ones) ranked in a seeded random
# order, not by dataset index, when only part of the labels is accepted (PCL itself accepts all of them).
PCL_CLUSTERING = {"kmeans_redo": 5, "kmeans_seed": "level", "tie_break": "random"}


def negatives_problem(r: int, cluster_numbers: list[int], batch_size: int) -> str | None:
    """Why ``r`` negative prototypes cannot always be drawn, or None."""
    if r < 0:
        return None if r == -1 else f"pcl_negatives={r}: use a count >= 0, or -1 for every free cluster"
    k = min(cluster_numbers)
    if r <= k - batch_size:
        return None
    room = max(0, k - batch_size)
    return (f"pcl_negatives r={r} must be smaller than k={k} clusters minus the batch size {batch_size}, i.e. at "
            f"most {room}: negative prototypes come from clusters no sample of the batch belongs to (PCL's code), "
            f"and a batch may leave only {room}; use --pcl-negatives {room} or -1 (every free cluster, at most {PCL_R})")


def prototype_logits(embedding: torch.Tensor, anchor_index: torch.Tensor, assignment: torch.Tensor,
                     centroids: torch.Tensor, phi: torch.Tensor, negatives: int,
                     gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCL's prototype logits for one level, for the anchors whose sample has an accepted label.

    ``assignment`` ``[N]``: cluster of each sample (values >= k mean "not accepted"). Returns
    (logits ``[A', U + r]``, targets ``[A']``, mask of the ``A'`` anchors used).
    """
    k = centroids.shape[0]
    anchor_cluster = assignment[anchor_index]
    used = anchor_cluster < k
    samples, target = anchor_index[used].unique(return_inverse=True)
    positive = assignment[samples]
    free = torch.ones(k, dtype=torch.bool, device=centroids.device)
    free[positive] = False
    pool = free.nonzero()[:, 0]
    if negatives == -1:
        r = min(PCL_R, pool.numel())
    elif negatives > pool.numel():
        raise ValueError(f"pcl_negatives r={negatives} must be smaller than k={k} clusters minus the "
                         f"{k - pool.numel()} clusters of this batch's samples: lower --pcl-negatives "
                         f"to at most {pool.numel()} or use -1")
    else:
        r = negatives
    pick = torch.randperm(pool.numel(), generator=gen)[:r].to(pool.device)
    columns = torch.cat([positive, pool[pick]])
    logits = embedding[used] @ centroids[columns].to(embedding.dtype).T / phi[columns].to(embedding.dtype)
    return logits, target, used


class PrototypeDetector(IncrementalDetector):
    """The IFND clustering detector that also keeps PCL's prototypes and adds ProtoNCE's term."""

    name = "ifnd"

    def __init__(self, *args, negatives: int = -1, **kwargs):
        super().__init__(*args, **kwargs)
        self.negatives = negatives
        self.centroids: list[torch.Tensor] = []  # per level, unit rows [k, D]
        self.phi: list[torch.Tensor] = []        # per level, [k]
        self.gen = torch.Generator().manual_seed(self.seed + 7919)
        self._device_labels: tuple[torch.Tensor, torch.Tensor] | None = None

    def _on_clustering(self, result) -> None:
        if result is None:
            self.centroids, self.phi = [], []
            return
        feats, clusterings = result
        self.centroids = [F.normalize(c.float(), dim=1) for c, _ in clusterings]
        self.phi = [pcl_concentration(feats, c.float(), a, self.temperature) for c, a in clusterings]

    def false_negatives(self, batch: ContrastiveBatch) -> None:
        return None  # ProtoNCE's instance term is InfoNCE: nothing is removed

    false_negative_labels = Detector.false_negative_labels

    def _labels_on(self, device) -> torch.Tensor:
        if self._device_labels is None or self._device_labels[0] is not self.labels:
            self._device_labels = (self.labels, self.labels.to(device))
        return self._device_labels[1].to(device)

    def extra_loss(self, batch: ContrastiveBatch) -> torch.Tensor | float:
        if not self.centroids:
            return 0.0
        if batch.anchor_embedding is None:
            raise ValueError("objective protonce needs the anchors' embeddings, but this framework's "
                             "ContrastiveBatch has no anchor_embedding")
        z = batch.anchor_embedding
        labels = self._labels_on(z.device)
        total = z.new_zeros((), dtype=torch.float32)
        for level, (centroids, phi) in enumerate(zip(self.centroids, self.phi)):
            logits, target, used = prototype_logits(z, batch.anchor_index, labels[level], centroids.to(z.device),
                                                    phi.to(z.device), self.negatives, self.gen)
            if used.any():
                total = total + F.cross_entropy(logits.float(), target, reduction="sum") / z.shape[0]
        return total / len(self.centroids)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "centroids": [c.cpu() for c in self.centroids],
                "phi": [p.cpu() for p in self.phi], "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.centroids = [c.clone() for c in state.get("centroids", [])]
        self.phi = [p.clone() for p in state.get("phi", [])]
        if "gen" in state:
            self.gen.set_state(state["gen"])


# --------------------------------------------------------------------------------------------
# Table 7 (App. E): ablation against PCL on CIFAR-100, SimCLR-based. Four orthogonal switches.
# --------------------------------------------------------------------------------------------
_FINE, _COARSE = (25, 50, 100), (1, 3, 10)  # cluster numbers x100 on CIFAR-100

_TABLE7 = [  # method, baseline, objective, assignment, clusters (x scale), confidence, paper top-1
    ("SimCLR", False, "instance", "constant", None, None, 71.5),
    ("PCL", False, "protonce", "step", _FINE, "pcl", 72.8),
    ("IFND (Ours)", False, "elimination", "linear", _COARSE, "ifnd", 74.0),
    ("PCL", True, "elimination", "step", _FINE, "pcl", 73.1),
    ("IFND", True, "protonce", "linear", _COARSE, "ifnd", 73.4),
    ("PCL", True, "protonce", "linear", _FINE, "pcl", 73.5),
    ("IFND", True, "elimination", "step", _COARSE, "ifnd", 73.1),
    ("PCL", True, "protonce", "step", _COARSE, "pcl", 69.9),
    ("IFND", True, "elimination", "linear", _FINE, "ifnd", 73.2),
    ("IFND", True, "elimination", "linear", _COARSE, "pcl", 71.2),
]


def table7_rows(scale: int = 100) -> list[dict]:
    """Every row of Table 7 as config overrides (framework SimCLR); ``scale`` multiplies the cluster
    numbers: 100 is the paper's CIFAR-100 ({25,50,100} x 100 = 2500/5000/10000 and {1,3,10} x 100 =
    100/300/1000), 10 the same ratios to the class count on CIFAR-10.

    Each row: ``method``, ``baseline`` (the paper's dagger), ``paper_top1`` and ``overrides`` (a dict
    of ``TrainConfig`` fields; the dataset, schedule and size come from the harness's profile). PCL's
    rows cluster as PCL's code (``PCL_CLUSTERING``); a row with PCL's confidence breaks its ties at
    random, whichever method it belongs to.
    """
    rows = []
    for method, baseline, objective, scheme, clusters, confidence, top1 in _TABLE7:
        if objective == "instance":
            overrides = {"framework": "simclr", "detector": "none", "objective": "instance"}
        else:
            overrides = {"framework": "simclr", "detector": "ifnd", "objective": objective,
                         "acceptance_scheme": scheme, "acceptance_initial": 0.0, "acceptance_final": 1.0,
                         "acceptance_step_at": 0.1, "cluster_numbers": [c * scale for c in clusters],
                         "confidence": confidence}
            if method == "PCL":
                overrides.update(PCL_CLUSTERING)
            elif confidence == "pcl":
                overrides["tie_break"] = PCL_CLUSTERING["tie_break"]
        rows.append({"method": method, "baseline": baseline, "objective": objective, "assignment": scheme,
                     "clusters_x100": list(clusters) if clusters else None, "confidence": confidence,
                     "paper_top1": top1, "overrides": overrides})
    return rows


TABLE7_ROWS = table7_rows(100)
