"""Frozen-backbone feature extraction, cached on disk: the one path every frozen protocol shares.

Linear probe on features, VOC07 SVMs, Places205 and k-means NMI / MTPR / MTNR all read features
through :class:`CheckpointFeatures` (or :func:`dataset_features` for an in-memory backbone). The
backbone runs in eval mode (BatchNorm uses its running statistics) under ``torch.no_grad``; the
features are the pooled backbone outputs (2048-D for ResNet-50, before any projection head, as
in MoCo/PCL's evaluations). The dataset fixes the view: centre crop for ImageNet-style images
(:func:`eval.data.center_crop_transform`), the bare 32x32 tensor for CIFAR arrays.

Cache: ``<cache_dir>/<dataset name>-<key>.npz`` holding ``features`` (float32 ``[N, D]``),
``labels`` and the checkpoint's description. The key is a SHA-256 of (cache format version,
the checkpoint file's SHA-256 and the requested arch/stem, the dataset's identity: its file list,
labels, file sizes and modification times, and its transform's ``repr``), so a changed
checkpoint, image, label or transform gets a new entry and a cache is never stale. Files are
written atomically (temp file + ``os.replace``). ``cache_dir=None`` disables caching.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eval.checkpoints import CheckpointInfo, file_sha256, load_backbone
from eval.progress import bar, log
from ifnd.io import atomic_save_npz

FEATURE_CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$IFND_FEATURE_CACHE``, else ``features/`` inside the project cache (``$IFND_CACHE`` or ~/.cache/ifnd)."""
    if os.environ.get("IFND_FEATURE_CACHE"):
        return Path(os.environ["IFND_FEATURE_CACHE"]).expanduser()
    from ifnd.data import cache_dir

    return cache_dir() / "features"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    return device


@dataclass
class FeatureSet:
    """Features ``[N, D]`` (float32), labels (``[N]`` class indices or ``[N, C]`` label vectors)."""

    features: np.ndarray
    labels: np.ndarray
    cache_path: Path | None = None
    reused: bool = False


def dataset_identity(dataset: Dataset) -> str:
    identity = getattr(dataset, "identity", None)
    if identity is None:
        raise TypeError(f"{type(dataset).__name__} has no identity(): use an eval.data dataset, or pass "
                        "cache_dir=None to extract without caching")
    return identity()


@torch.no_grad()
def extract_features(backbone: nn.Module, dataset: Dataset, batch_size: int = 256, workers: int = 0,
                     device: str | torch.device = "cpu", progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen backbone over ``dataset`` in order; returns (features, labels) as numpy."""
    device = resolve_device(device) if isinstance(device, str) else device
    was_training = backbone.training
    backbone = backbone.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    features, labels = [], []
    name = getattr(dataset, "name", type(dataset).__name__)
    log(progress, f"features of {name}: {len(dataset)} images on {device} ...")
    started = time.perf_counter()
    for images, targets in bar(loader, progress, f"features {name[:40]}", leave=False):
        features.append(backbone(images.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(targets))
    log(progress, f"features of {name}: done in {time.perf_counter() - started:.0f}s")
    backbone.train(was_training)
    if not features:
        raise ValueError(f"dataset {name} is empty: nothing to extract features from")
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def cache_file(cache_dir: str | os.PathLike, model_identity: str, dataset: Dataset) -> Path:
    key = hashlib.sha256(f"v{FEATURE_CACHE_VERSION}\n{model_identity}\n{dataset_identity(dataset)}".encode())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", getattr(dataset, "name", "dataset").split(":")[0])[:40]
    return Path(cache_dir) / f"{stem}-{key.hexdigest()[:32]}.npz"


def _read_cache(path: Path) -> tuple[FeatureSet, dict] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            return FeatureSet(npz["features"], npz["labels"], path, reused=True), meta
    except (OSError, ValueError, KeyError):
        return None  # unreadable entry (e.g. a foreign file): recompute and overwrite it


def dataset_features(backbone: nn.Module, dataset: Dataset, model_identity: str | None = None,
                     cache_dir: str | os.PathLike | None = None, batch_size: int = 256, workers: int = 0,
                     device: str | torch.device = "cpu", progress: bool = True, meta: dict | None = None
                     ) -> FeatureSet:
    """Features of an in-memory backbone; cached when both ``model_identity`` and ``cache_dir`` are given."""
    path = cache_file(cache_dir, model_identity, dataset) if cache_dir and model_identity else None
    if path is not None and path.exists() and (hit := _read_cache(path)) is not None:
        return hit[0]
    features, labels = extract_features(backbone, dataset, batch_size, workers, device, progress)
    if path is not None:
        atomic_save_npz(path, features=features, labels=labels, meta=np.array(json.dumps(meta or {})))
    return FeatureSet(features, labels, path, reused=False)


class CheckpointFeatures:
    """Features of a checkpoint's backbone for any number of datasets; loads the weights only on a cache miss."""

    def __init__(self, checkpoint: str | os.PathLike, arch: str | None = None, cifar_stem: bool | None = None,
                 trusted: bool = False, cache_dir: str | os.PathLike | None = None, batch_size: int = 256,
                 workers: int = 0, device: str = "auto", progress: bool = True):
        self.checkpoint = Path(checkpoint)
        self.arch, self.cifar_stem, self.trusted = arch, cifar_stem, trusted
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size, self.workers, self.device, self.progress = batch_size, workers, device, progress
        self._backbone: nn.Module | None = None
        self._info: CheckpointInfo | None = None
        self._model_identity: str | None = None

    @property
    def model_identity(self) -> str:
        if self._model_identity is None:
            if not self.checkpoint.is_file():
                self.backbone()  # raises the CheckpointError naming the missing file
            self._model_identity = f"{file_sha256(self.checkpoint)}|arch={self.arch}|cifar_stem={self.cifar_stem}"
        return self._model_identity

    def backbone(self) -> nn.Module:
        """The loaded backbone (eval mode); loads and checks the checkpoint on first use."""
        if self._backbone is None:
            self._backbone, self._info = load_backbone(self.checkpoint, self.arch, self.cifar_stem, self.trusted)
        return self._backbone

    @property
    def info(self) -> CheckpointInfo:
        if self._info is None:
            self.backbone()
        return self._info

    def __call__(self, dataset: Dataset) -> FeatureSet:
        if self.cache_dir is not None:
            path = cache_file(self.cache_dir, self.model_identity, dataset)
            if path.exists() and (hit := _read_cache(path)) is not None:
                if self._info is None and hit[1]:  # same content, possibly moved: describe the file as it is now
                    self._info = CheckpointInfo(**{**hit[1], "path": str(self.checkpoint.resolve())})
                return hit[0]
        return dataset_features(self.backbone(), dataset, self.model_identity if self.cache_dir else None, self.cache_dir,
                                self.batch_size, self.workers, resolve_device(self.device), self.progress,
                                meta=self.info.summary())
