"""PCL (Li et al., 2021, ICLR) as a detector: IFND's clustering plus ProtoNCE's prototype term.

``L_ProtoNCE = L_InfoNCE + 1/M sum_m L_proto,m`` (PCL Eq. 11 as in its official code,
salesforce/PCL ``pcl/builder.py`` + ``main_pcl.py``). For clustering level ``m`` with unit
centroids ``c`` and per-cluster concentrations ``phi`` (PCL Eq. 9, ``pcl_concentration``):

* the columns are the prototypes of the batch's samples (one per distinct sample, PCL's
  ``pos_prototypes``) followed by ``r`` negative prototypes sampled without replacement from the
  clusters that **no** sample of the batch is assigned to (PCL: ``set(all) - set(pos_proto_id)``);
* logits ``z_a . c_col / phi_col``; cross-entropy to the anchor's own sample's column, so the other
  batch samples' prototypes are negatives too, exactly as PCL's ``labels_proto = arange(B)``;
* averaged over the anchors, then over levels (``loss_proto /= len(num_cluster)``).

The instance term is the masked kernel with the instance masks (detector ``pcl`` removes nothing:
objective ``instance``, Eq. 1); the prototype term is the detector's ``extra_loss``. So ProtoNCE
runs on SimCLR (Table 7: 2B anchors, two views of a sample share its column) and on MoCo v2
(Table 1: the queries are the anchors, as PCL), not on SwAV (no anchors). ``--mode pcl`` adds
PCL's schedule (step warm-up) and confidence (Eq. 9).

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

from ifnd.falseneg.base import ContrastiveBatch, DetectorSpec, no_labels
from ifnd.falseneg.incremental import (CLUSTERING_FIELDS, IncrementalDetector, clustering_arguments,
                                       clustering_problem, pcl_concentration)

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

    name = "pcl"

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

    def false_negative_labels(self, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return no_labels(batch)

    def _labels_on(self, device) -> torch.Tensor:
        if self._device_labels is None or self._device_labels[0] is not self.labels:
            self._device_labels = (self.labels, self.labels.to(device))
        return self._device_labels[1].to(device)

    def extra_loss(self, batch: ContrastiveBatch) -> torch.Tensor | float:
        if not self.centroids:
            return 0.0
        if batch.anchor_embedding is None:
            raise ValueError("detector pcl needs the anchors' embeddings, but this framework's "
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


def config_problem(cfg) -> str | None:
    return clustering_problem(cfg) or negatives_problem(cfg.pcl_negatives, cfg.cluster_numbers, cfg.batch_size)


SPEC = DetectorSpec(
    "pcl", lambda cfg, true_labels: PrototypeDetector(*clustering_arguments(cfg, true_labels),
                                                      negatives=cfg.pcl_negatives),
    "PCL (Li et al., 2021): IFND's clustering plus ProtoNCE's prototype term; removes nothing",
    objectives=("instance",), refreshes=True, extra_loss=True, fields=CLUSTERING_FIELDS + ("pcl_negatives",),
    check=config_problem, recorded_as={"detector": "ifnd", "objective": "protonce"})
