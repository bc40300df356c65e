"""Tiny datasets and checkpoints in the exact on-disk layouts the protocols read (tests, smoke runs).

Images are small JPEGs whose colour depends on the class (plus noise), so even a random backbone
separates classes a little. Layouts match :mod:`eval.data`; checkpoints match our trainer's format
and the official MoCo/PCL format read by :mod:`eval.checkpoints`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval.data import PLACES205_IMAGES, PLACES205_LISTS, VOC_CLASSES
from ifnd.models import Encoder, build_backbone

IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")


def write_image(path: str | os.PathLike, label: int, seed: int, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    colour = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 151 + 160) % 256], dtype=np.float64)
    pixels = np.clip(colour + rng.normal(0, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def make_imagenet_folders(root: str | os.PathLike, wnids=IMAGENET_WNIDS, train_per_class: int = 4,
                          val_per_class: int = 2, size: int = 32) -> Path:
    """``root/train/<wnid>/<wnid>_<n>.JPEG`` and ``root/val/<wnid>/ILSVRC2012_val_<n>.JPEG``."""
    root = Path(root)
    for label, wnid in enumerate(wnids):
        for n in range(train_per_class):
            write_image(root / "train" / wnid / f"{wnid}_{1000 + n}.JPEG", label, seed=label * 1000 + n, size=size)
        for n in range(val_per_class):
            write_image(root / "val" / wnid / f"ILSVRC2012_val_{label * 100 + n:08d}.JPEG", label,
                        seed=50_000 + label * 1000 + n, size=size)
    return root


def make_subset_file(path: str | os.PathLike, wnids=IMAGENET_WNIDS, per_class: int = 2) -> Path:
    """A SimCLR-style label subset naming the first ``per_class`` training images of each class."""
    path = Path(path)
    path.write_text("".join(f"{wnid}_{1000 + n}.JPEG\n" for wnid in wnids for n in range(per_class)))
    return path


def voc_labels(num_images: int, offset: int) -> np.ndarray:
    """A deterministic 1/-1/0 label matrix in which every class has >= 3 positives (>= 15 images)."""
    index = np.arange(num_images)[:, None] + offset
    classes = np.arange(len(VOC_CLASSES))[None, :]
    labels = np.where((index + classes) % 5 == 0, 1, -1)
    labels[((index + 2 * classes) % 11 == 3) & (labels == -1)] = 0  # some difficult images
    return labels


def make_vocdevkit(root: str | os.PathLike, trainval: int = 20, test: int = 15, size: int = 32) -> Path:
    """``root/VOCdevkit/VOC2007/{JPEGImages,ImageSets/Main}`` with both splits; returns ``root/VOCdevkit``."""
    voc = Path(root) / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    image_id = 0
    for split, count in (("trainval", trainval), ("test", test)):
        ids = [f"{image_id + i + 1:06d}" for i in range(count)]
        image_id += count
        labels = voc_labels(count, offset=0 if split == "trainval" else 7)
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c, name in enumerate(VOC_CLASSES):
            # the official files pad positive labels with two spaces ("000012  1")
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {'' if v < 0 else ' '}{v}\n" for i, v in zip(ids, labels[:, c])))
        for i, image in enumerate(ids):
            write_image(voc / "JPEGImages" / f"{image}.jpg", int(np.argmax(labels[i] == 1)), seed=int(image),
                        size=size)
    return voc.parent


def make_places205(root: str | os.PathLike, classes=("a/abbey", "b/bakery/shop", "c/canyon"),
                   train_per_class: int = 4, val_per_class: int = 2, size: int = 32) -> Path:
    """The official Places205 layout: images under data/vision/.../images256 and the two list files."""
    root = Path(root)
    lists = {"train": [], "val": []}
    for label, name in enumerate(classes):
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for n in range(count):
                relative = f"{name}/{'gsun_' if split == 'val' else ''}{label:02d}{n:06d}.jpg"
                write_image(root / PLACES205_IMAGES / relative, label, seed=(0 if split == 'train' else 7919) + 100 * label + n, size=size)
                lists[split].append(f"{relative} {label}\n")
    (root / PLACES205_LISTS).mkdir(parents=True, exist_ok=True)
    for split, lines in lists.items():
        (root / PLACES205_LISTS / f"{split}_places205.csv").write_text("".join(lines))
    return root


def save_checkpoint(path: str | os.PathLike, arch: str = "convnet4", cifar_stem: bool = False,
                    layout: str = "ifnd", seed: int = 0) -> Path:
    """A randomly initialised checkpoint in our trainer's layout or the official MoCo/PCL layout."""
    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "ifnd":
        encoder = Encoder(arch, cifar_stem)
        state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        torch.save({"config": {"arch": arch, "cifar_stem": cifar_stem, "dataset": "cifar10"}, "epoch": 1,
                    "model": state}, path)
    elif layout == "moco":
        backbone = build_backbone(arch, cifar_stem)
        state = {}
        for branch in ("encoder_q", "encoder_k"):
            state |= {f"module.{branch}.{k}": v for k, v in backbone.state_dict().items()}
            state[f"module.{branch}.fc.0.weight"] = torch.randn(backbone.out_dim, backbone.out_dim)
            state[f"module.{branch}.fc.2.weight"] = torch.randn(128, backbone.out_dim)
        state["module.queue"] = torch.randn(128, 16)
        torch.save({"epoch": 200, "arch": arch, "state_dict": state}, path)
    else:
        raise ValueError(f"unknown checkpoint layout {layout!r}: use 'ifnd' or 'moco'")
    return path
