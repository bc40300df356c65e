"""Framework registry: a framework is one file and one entry here."""
from __future__ import annotations

from typing import Callable

from ifnd.frameworks.base import Framework
from ifnd.frameworks.moco import MoCo
from ifnd.frameworks.simclr import SimCLR
from ifnd.frameworks.swav import SwAV

BLUR_FRAMEWORKS = ("moco", "swav")  # recipes with Gaussian blur (p=0.5) on ImageNet-sized images


def blur_probability(cfg) -> float:
    """``cfg.blur_p`` if set; else MoCo v2's / SwAV's 0.5 from 64 px up (ImageNet), 0 at CIFAR sizes
    (their CIFAR recipes drop the blur) and for SimCLR (the suite's CIFAR recipe has none)."""
    if cfg.blur_p is not None:
        return cfg.blur_p
    return 0.5 if cfg.framework in BLUR_FRAMEWORKS and cfg.image_size >= 64 else 0.0


def _moco(cfg) -> MoCo:
    return MoCo(cfg.arch, cfg.cifar_stem, momentum=cfg.moco_momentum, queue_size=cfg.queue_size,
                bn_splits=cfg.moco_bn_splits, seed=cfg.seed)


def _swav(cfg) -> SwAV:
    return SwAV(cfg.arch, cfg.cifar_stem, prototypes=cfg.swav_prototypes, crop_sizes=cfg.swav_crop_sizes,
                crop_counts=cfg.swav_crop_counts, crop_min_scale=cfg.swav_crop_min_scale,
                crop_max_scale=cfg.swav_crop_max_scale, epsilon=cfg.swav_epsilon,
                sinkhorn_iterations=cfg.swav_sinkhorn_iters, queue_size=cfg.swav_queue_size,
                queue_start_epoch=cfg.swav_queue_start_epoch,
                freeze_prototypes_iters=cfg.swav_freeze_prototypes_iters)


FRAMEWORKS: dict[str, Callable[..., Framework]] = {
    "simclr": lambda cfg: SimCLR(cfg.arch, cfg.cifar_stem),
    "moco": _moco,
    "swav": _swav,
}


def build_framework(cfg) -> Framework:
    framework = FRAMEWORKS[cfg.framework](cfg)
    framework.blur_p = blur_probability(cfg)
    return framework
