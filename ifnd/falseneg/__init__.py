"""Detector registry: how each ``--detector`` name is built from a config and the true labels."""
from __future__ import annotations

from typing import Callable

import torch

from ifnd.falseneg.base import ContrastiveBatch, Detector, LabelDetector, TrueLabelDetector
from ifnd.falseneg.glofnd import GloFNDDetector
from ifnd.falseneg.incremental import AcceptanceSchedule, IncrementalDetector
from ifnd.falseneg.pcl import PrototypeDetector


def _incremental(cfg, true_labels: torch.Tensor) -> IncrementalDetector:
    """IFND's clustering detector; with objective ``protonce`` it also keeps PCL's prototypes."""
    schedule = AcceptanceSchedule(cfg.acceptance_scheme, cfg.acceptance_initial, cfg.acceptance_final,
                                  cfg.acceptance_step_at)
    args = (true_labels.shape[0], cfg.cluster_numbers, schedule, cfg.refresh_every, cfg.temperature,
            cfg.confidence, cfg.seed, cfg.kmeans_backend, cfg.kmeans_redo, cfg.kmeans_seed, cfg.tie_break)
    if cfg.objective == "protonce":
        return PrototypeDetector(*args, negatives=cfg.pcl_negatives)
    return IncrementalDetector(*args)


def _glofnd(cfg, true_labels: torch.Tensor) -> GloFNDDetector:
    return GloFNDDetector(true_labels.shape[0], cfg.glofnd_alpha, cfg.glofnd_lr, cfg.glofnd_start_epoch,
                          cfg.glofnd_loss)


DETECTORS: dict[str, Callable[..., Detector]] = {
    "none": lambda cfg, true_labels: Detector(),
    "true_labels": lambda cfg, true_labels: TrueLabelDetector(true_labels),
    "ifnd": _incremental,
    "glofnd": _glofnd,
}


def build_detector(cfg, true_labels: torch.Tensor) -> Detector:
    """``true_labels`` are the training labels after the config's ``label_map``."""
    return DETECTORS[cfg.detector](cfg, true_labels)


__all__ = ["ContrastiveBatch", "Detector", "LabelDetector", "TrueLabelDetector", "GloFNDDetector", "PrototypeDetector",
           "DETECTORS", "build_detector"]
