"""Readers for the standard on-disk layouts of the evaluation datasets (nothing is downloaded).

* ImageNet-style folders, through torchvision's ``ImageFolder`` rules:
  ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG`` (classes = sorted folder names).
* PASCAL VOC2007 classification: ``VOCdevkit/VOC2007/JPEGImages/<id>.jpg`` with
  ``ImageSets/Main/{trainval,test}.txt`` (image ids) and ``ImageSets/Main/<class>_{split}.txt``
  (``<id> <label>``, label 1 present, -1 absent, 0 difficult) for the 20 classes; targets are
  ``int8 [20]`` vectors holding those 1 / -1 / 0 values.
* Places205: the official list files ``trainvalsplit_places205/{train,val}_places205.csv``
  (``<relative/path.jpg> <label>`` per line) with images under
  ``data/vision/torralba/deeplearning/images256/``; root, image folder and lists can be given.
* SimCLR's ImageNet label subsets (``imagenet_subsets/1percent.txt`` / ``10percent.txt``): one
  training file name per line, e.g. ``n01440764_10026.JPEG``; its class is the part before ``_``
  and its label the class's index among the sorted ``train/`` folders (so it matches ``val``).
* CIFAR arrays from :func:`ifnd.data.load_split` (the trainer's decoded copy), fed as 32x32
  tensors with only the channel standardisation the trainer uses (no resize, no crop).

Every dataset carries an :meth:`identity` string (file list, labels, sizes, modification times,
transform) that keys the feature cache of :mod:`eval.features`. A missing path raises
:class:`DatasetNotFoundError` naming the path and the layout that was expected.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIZE, CROP_SIZE = 256, 224  # MoCo main_lincls / PCL eval_svm_voc: Resize(256) + CenterCrop(224)
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
PLACES205_IMAGES = Path("data/vision/torralba/deeplearning/images256")
PLACES205_LISTS = Path("trainvalsplit_places205")

IMAGENET_LAYOUT = "<root>/{train,val}/<class>/<image> (ImageNet layout: one folder per class, e.g. n01440764)"
VOC_LAYOUT = ("VOCdevkit/VOC2007/JPEGImages/<id>.jpg, VOCdevkit/VOC2007/ImageSets/Main/{trainval,test}.txt and "
              "ImageSets/Main/<class>_{trainval,test}.txt for the 20 VOC classes (from VOCtrainval_06-Nov-2007.tar "
              "and VOCtest_06-Nov-2007.tar)")
PLACES205_LAYOUT = (f"<root>/{PLACES205_IMAGES}/<letter>/<class>/<image>.jpg and "
                    f"<root>/{PLACES205_LISTS}/{{train,val}}_places205.csv with '<relative/path.jpg> <label>' lines")
SUBSET_LAYOUT = ("one ImageNet training file name per line, e.g. n01440764_10026.JPEG (SimCLR's "
                 "imagenet_subsets/1percent.txt or 10percent.txt from github.com/google-research/simclr)")


class DatasetNotFoundError(FileNotFoundError):
    """Evaluation data is missing or laid out differently than the protocol expects."""


def _require(path: Path, what: str, layout: str) -> Path:
    if not path.exists():
        raise DatasetNotFoundError(f"{what} not found: {path} does not exist; expected {layout}")
    return path


def center_crop_transform(resize: int = RESIZE_SIZE, crop: int = CROP_SIZE, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> transforms.Compose:
    """The evaluation view of ImageNet-style images: Resize(256), CenterCrop(224), standardise."""
    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor(),
                               transforms.Normalize(mean, std)])


def random_crop_transform(crop: int = CROP_SIZE, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD) -> transforms.Compose:
    """The training view of linear evaluation and fine-tuning: RandomResizedCrop(224) + flip (MoCo main_lincls)."""
    return transforms.Compose([transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(mean, std)])


def _stat_signature(path: str) -> str:
    stat = os.stat(path)
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class ImageListDataset(Dataset):
    """Images listed as (path, target) pairs; targets are class indices or label vectors."""

    def __init__(self, samples: list[tuple[str, Any]], classes: Sequence[str], transform: Callable | None,
                 name: str, layout: str):
        self.samples = samples
        self.classes = list(classes)
        self.transform = transform
        self.name = name
        self.layout = layout
        self._file_signature: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        return (self.transform(image) if self.transform else image), target

    @property
    def targets(self) -> np.ndarray:
        return np.asarray([t for _, t in self.samples])

    def with_transform(self, transform: Callable | None) -> "ImageListDataset":
        twin = ImageListDataset(self.samples, self.classes, transform, self.name, self.layout)
        twin._file_signature = self._file_signature
        return twin

    def identity(self) -> str:
        """Hash of every file's path, target, size and mtime, plus the transform: the cache key part."""
        if self._file_signature is None:
            digest = hashlib.sha256()
            for path, target in self.samples:
                try:
                    signature = _stat_signature(path)
                except FileNotFoundError as err:
                    raise DatasetNotFoundError(f"{self.name}: image {path} is listed but missing; expected "
                                               f"{self.layout}") from err
                digest.update(f"{path}|{np.asarray(target).tolist()}|{signature}\n".encode())
            self._file_signature = digest.hexdigest()
        return f"{self.name}|{len(self)}|{self._file_signature}|{self.transform!r}"


class ArrayDataset(Dataset):
    """In-memory uint8 ``[N, H, W, 3]`` images (e.g. CIFAR), standardised per channel, no resizing."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                 name: str, classes: Sequence[str] = ()):
        self.images, self.labels = images, labels
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.name, self.classes = name, list(classes)
        self._content: str | None = None

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int):
        image = self.images[index].permute(2, 0, 1).float().div_(255)
        return (image - self.mean) / self.std, int(self.labels[index])

    @property
    def targets(self) -> np.ndarray:
        return self.labels.numpy()

    def balanced_subset(self, size: int, seed: int = 0) -> "ArrayDataset":
        """``size`` images with classes as balanced as possible (:func:`ifnd.data.stratified_subset`); all if 0."""
        from ifnd.data import stratified_subset

        if not size or size >= len(self):
            return self
        index = stratified_subset(self.labels, size, seed)
        return ArrayDataset(self.images[index], self.labels[index], self.mean.flatten().tolist(),
                            self.std.flatten().tolist(), f"{self.name}-subset{size}-seed{seed}", self.classes)

    def identity(self) -> str:
        if self._content is None:
            digest = hashlib.sha256(np.ascontiguousarray(self.images.numpy()).tobytes())
            digest.update(np.ascontiguousarray(self.labels.numpy()).tobytes())
            self._content = digest.hexdigest()
        return (f"{self.name}|{len(self)}|{self._content}|standardise mean={self.mean.flatten().tolist()} "
                f"std={self.std.flatten().tolist()}")


def image_folder(root: str | os.PathLike, split: str, transform: Callable | None = None) -> ImageListDataset:
    """``<root>/<split>/<class>/<image>`` read with torchvision ``ImageFolder``'s rules."""
    root = _require(Path(root), "dataset root", IMAGENET_LAYOUT)
    folder = root / split
    if not folder.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DatasetNotFoundError(f"split folder {folder} does not exist (folders present: "
                                   f"{', '.join(present) or 'none'}); expected {IMAGENET_LAYOUT}"
                                   + (f"; pass the split name, e.g. --val-split {present[-1]}" if present else ""))
    try:
        found = ImageFolder(str(folder))
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"no images under {folder} ({err}); expected {IMAGENET_LAYOUT}") from err
    return ImageListDataset(list(found.samples), found.classes, transform, f"imagefolder-{split}:{folder.resolve()}",
                            IMAGENET_LAYOUT)


def _voc_main_folder(root: Path) -> Path:
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    _require(root, "VOC2007 root", VOC_LAYOUT)
    raise DatasetNotFoundError(f"no ImageSets/Main under {root}, {root / 'VOC2007'} or "
                               f"{root / 'VOCdevkit' / 'VOC2007'}; expected {VOC_LAYOUT}")


def _read_lines(path: Path, layout: str) -> list[list[str]]:
    _require(path, "list file", layout)
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def voc2007(root: str | os.PathLike, split: str, transform: Callable | None = None) -> ImageListDataset:
    """VOC2007 ``trainval`` or ``test`` with ``int8 [20]`` targets (1 present, -1 absent, 0 difficult)."""
    if split not in ("trainval", "test", "train", "val"):
        raise ValueError(f"unknown VOC2007 split {split!r}: use trainval or test")
    voc = _voc_main_folder(Path(root))
    main = voc / "ImageSets" / "Main"
    ids = [parts[0] for parts in _read_lines(main / f"{split}.txt", VOC_LAYOUT)]
    row = {image_id: i for i, image_id in enumerate(ids)}
    labels = np.full((len(ids), len(VOC_CLASSES)), -1, dtype=np.int8)
    seen = np.zeros_like(labels, dtype=bool)
    for c, name in enumerate(VOC_CLASSES):
        for parts in _read_lines(main / f"{name}_{split}.txt", VOC_LAYOUT):
            if len(parts) != 2 or parts[1] not in ("1", "-1", "0") or parts[0] not in row:
                raise DatasetNotFoundError(f"{main / f'{name}_{split}.txt'} has the line {' '.join(parts)!r}: "
                                           f"expected '<id in {split}.txt> <1|-1|0>' lines")
            labels[row[parts[0]], c] = int(parts[1])
            seen[row[parts[0]], c] = True
    unlabeled = np.flatnonzero(~seen.all(1))
    if unlabeled.size:
        raise DatasetNotFoundError(f"image {ids[unlabeled[0]]} of {main / f'{split}.txt'} has no label in some "
                                   f"<class>_{split}.txt files; expected {VOC_LAYOUT}")
    images = _require(voc / "JPEGImages", "VOC2007 images", VOC_LAYOUT)
    samples = [(str(images / f"{image_id}.jpg"), labels[i]) for i, image_id in enumerate(ids)]
    return ImageListDataset(samples, VOC_CLASSES, transform, f"voc2007-{split}:{voc.resolve()}", VOC_LAYOUT)


def places205(root: str | os.PathLike | None, split: str, transform: Callable | None = None,
              images_dir: str | os.PathLike | None = None, list_file: str | os.PathLike | None = None
              ) -> ImageListDataset:
    """Places205 ``train`` or ``val`` from the official list files.

    ``images_dir`` defaults to ``<root>/data/vision/torralba/deeplearning/images256`` and
    ``list_file`` to ``<root>/trainvalsplit_places205/<split>_places205.csv``.
    """
    if split not in ("train", "val"):
        raise ValueError(f"unknown Places205 split {split!r}: use train or val")
    if root is None and (images_dir is None or list_file is None):
        raise DatasetNotFoundError("Places205 needs a root, or both an images folder and a list file; "
                                   f"expected {PLACES205_LAYOUT}")
    root = Path(root) if root is not None else None
    if root is not None:
        _require(root, "Places205 root", PLACES205_LAYOUT)
    images = _require(Path(images_dir) if images_dir else root / PLACES205_IMAGES, "Places205 images folder",
                      PLACES205_LAYOUT)
    listing = Path(list_file) if list_file else root / PLACES205_LISTS / f"{split}_places205.csv"
    samples, names = [], {}
    for parts in _read_lines(listing, PLACES205_LAYOUT):
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetNotFoundError(f"{listing} has the line {' '.join(parts)!r}: expected "
                                       "'<relative/path.jpg> <label>' lines")
        label = int(parts[1])
        samples.append((str(images / parts[0].lstrip("/")), label))
        names.setdefault(label, str(Path(parts[0]).parent))
    if not samples:
        raise DatasetNotFoundError(f"{listing} lists no images; expected {PLACES205_LAYOUT}")
    classes = [names.get(label, f"class_{label}") for label in range(max(names) + 1)]
    return ImageListDataset(samples, classes, transform, f"places205-{split}:{listing.resolve()}", PLACES205_LAYOUT)


def imagenet_subset(imagenet_root: str | os.PathLike, subset_file: str | os.PathLike,
                    transform: Callable | None = None) -> ImageListDataset:
    """The training images named in a SimCLR subset file, labelled as ``ImageFolder(<root>/train)`` would."""
    train = _require(Path(imagenet_root), "ImageNet root", IMAGENET_LAYOUT) / "train"
    _require(train, "ImageNet train folder", IMAGENET_LAYOUT)
    classes = sorted(entry.name for entry in os.scandir(train) if entry.is_dir())
    class_index = {name: i for i, name in enumerate(classes)}
    samples, missing = [], []
    for parts in _read_lines(Path(subset_file), SUBSET_LAYOUT):
        name = parts[0]
        wnid = name.split("_")[0]
        if len(parts) != 1 or "_" not in name or wnid not in class_index:
            raise DatasetNotFoundError(f"{subset_file} has the line {' '.join(parts)!r} whose class is not a folder "
                                       f"of {train}; expected {SUBSET_LAYOUT}")
        path = train / wnid / name
        if not path.exists():
            missing.append(str(path))
        samples.append((str(path), class_index[wnid]))
    if missing:
        raise DatasetNotFoundError(f"{len(missing)} images of {subset_file} are missing, e.g. {missing[0]}; "
                                   f"expected them under {IMAGENET_LAYOUT}")
    if not samples:
        raise DatasetNotFoundError(f"{subset_file} lists no images; expected {SUBSET_LAYOUT}")
    return ImageListDataset(samples, classes, transform, f"imagenet-subset:{Path(subset_file).resolve()}",
                            SUBSET_LAYOUT)


def cifar_arrays(dataset: str, split: str, data_root: str | os.PathLike | None = None) -> ArrayDataset:
    """CIFAR-10/100 ``train`` / ``test`` as decoded by the trainer (:func:`ifnd.data.load_split`)."""
    from ifnd.data import DataError, STATS, load_split

    try:
        arrays = load_split(dataset, split, data_root)
    except DataError as err:
        raise DatasetNotFoundError(str(err)) from err
    mean, std = STATS[dataset]
    return ArrayDataset(arrays.images, arrays.labels, mean, std, f"{dataset}-{split}", arrays.classes)


def cifar_split(dataset: str, split: str, data_root: str | os.PathLike | None = None, subset: int = 0,
                seed: int = 0) -> ArrayDataset:
    """:func:`cifar_arrays`, or a class-balanced subset of ``subset`` of its images drawn with ``seed``.

    An evaluation's subset (e.g. the probe's training images), not the samples a run trained on
    (:func:`ifnd.data.training_indices`); ``subset`` 0 or at least the split's size is the whole split.
    """
    return cifar_arrays(dataset, split, data_root).balanced_subset(subset, seed)


def map_labels(labels, label_map: Sequence[int] | None = None) -> np.ndarray:
    """``label_map[label]`` for every label (original class -> new label, e.g. its WordNet ancestor); int64."""
    labels = np.asarray(labels).astype(np.int64)
    if label_map is None:
        return labels
    label_map = np.asarray(label_map, dtype=np.int64)
    if labels.size and label_map.size <= labels.max():
        raise ValueError(f"label_map has {label_map.size} entries but the labels reach {labels.max()}: give one "
                         "new label per original class")
    return label_map[labels]
