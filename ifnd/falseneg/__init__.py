"""Detector registry: each ``--detector`` is one module declaring a :class:`DetectorSpec`, and one line here.

A spec says what the detector can do (the objectives it serves, whether its detections are labels,
whether it re-detects every ``refresh_every`` epochs) and checks its own config fields;
:class:`ifnd.config.TrainConfig` validates against the specs, never against names.
"""
from __future__ import annotations

import torch

from ifnd.falseneg import glofnd, incremental, pcl, scheduled
from ifnd.falseneg.base import NONE, TRUE_LABELS, ContrastiveBatch, Detector, DetectorSpec, LabelDetector

DETECTORS: dict[str, DetectorSpec] = {spec.name: spec for spec in (
    NONE,
    TRUE_LABELS,
    incremental.SPEC,
    pcl.SPEC,
    glofnd.SPEC,
    scheduled.SPEC,
)}


def build_detector(cfg, true_labels: torch.Tensor) -> Detector:
    """``true_labels`` are the training labels after the config's ``label_map``."""
    return DETECTORS[cfg.detector].build(cfg, true_labels)


__all__ = ["ContrastiveBatch", "Detector", "DetectorSpec", "LabelDetector", "DETECTORS", "build_detector"]
