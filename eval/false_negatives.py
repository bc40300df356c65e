"""MTPR / MTNR of a run's false-negative detector at a checkpoint, over the run's own training samples.

The detector is rebuilt from the checkpoint's config and state (:func:`ifnd.falseneg.build_detector`),
and its detection scored against the data set's classes of the samples the run trained on
(:func:`ifnd.data.training_indices`; the classes, not the run's ``label_map``, as the trainer's
logged MTPR / MTNR) with the definitions of :func:`ifnd.metrics.mtpr_mtnr`:

* a label-based detector (IFND, PCL, the true-label detectors): its labels at each level; ``mtpr`` /
  ``mtnr`` are level 0's (IFND's first cluster number, the trainer's ``mtpr_k<k>`` at its last refresh);
* a detector that detects by similarity (GloFND): its rule (:meth:`ifnd.falseneg.Detector.detects`)
  on the cosine similarities of every pair of training samples, embedded as the trainer embeds them
  for IFND's refreshes (the L2-normalised projection z, evaluation transform; training compared
  augmented views). O(N^2) pairs: meant for CIFAR-sized training sets;
* ``none``: nothing detected, MTPR 0 and MTNR 100.
"""
from __future__ import annotations

from pathlib import Path

import torch

from eval.checkpoints import load_framework
from eval.tsne import embed
from ifnd.config import TrainConfig
from ifnd.data import load_split, training_indices
from ifnd.falseneg import Detector, build_detector
from ifnd.metrics import mtpr_mtnr, pair_mtpr_mtnr
from ifnd.train import training_labels


def checkpoint_rates(path: str | Path, data_root=None) -> dict:
    """``{"mtpr", "mtnr", "levels": [{"mtpr", "mtnr"}], "rule", "samples", "epoch"}`` of our trainer's checkpoint."""
    model, raw = load_framework(path)
    cfg = TrainConfig.from_dict(raw["config"])
    data = load_split(cfg.dataset, "train", data_root or cfg.data_root)
    index = training_indices(data.labels, cfg.train_subset, cfg.seed)
    truth = data.labels[index]
    detector = build_detector(cfg, training_labels(cfg, truth))
    detector.load_state_dict(raw["detector"])
    labels = detector.level_labels()
    if labels is not None:
        rule = "labels"
        levels = [mtpr_mtnr(level.cpu().numpy(), truth.numpy()) for level in labels]
    elif type(detector).detects is Detector.detects:  # neither labels nor a similarity rule: detects nothing
        rule, levels = "nothing", [(0.0, 100.0)]
    else:
        rule = "similarity"
        z = torch.as_tensor(embed(model, data.images[index], cfg.dataset, "projection"))
        levels = [pair_mtpr_mtnr(lambda rows: detector.detects(z[rows] @ z.T, rows), truth)]
    return {"mtpr": levels[0][0], "mtnr": levels[0][1], "levels": [{"mtpr": p, "mtnr": n} for p, n in levels],
            "rule": rule, "samples": int(truth.numel()), "epoch": int(raw.get("epoch", 0))}
