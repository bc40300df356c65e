"""Tiny datasets and checkpoints in the exact on-disk layouts the protocols read (tests, smoke runs).

Images are small JPEGs whose colour depends on the class (plus noise), so even a random backbone
separates classes a little. Layouts match :mod:`eval.data`; checkpoints match our trainer's format
and the official MoCo/PCL format read by :mod:`eval.checkpoints`.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval.data import PLACES205_IMAGES, PLACES205_LISTS, VOC_CLASSES
from ifnd.models import Encoder, build_backbone

IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")


def write_image(path: str | os.PathLike, label: int, seed: int, size: int = 32) -> Path:
    pixels = class_pixels(label, seed, size)
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
    """``root/VOCdevkit/VOC2007`` as the two official archives unpack: ``JPEGImages``, ``Annotations``
    (one XML per image, an object per present class, ``difficult`` for label 0) and ``ImageSets/Main``
    with ``{train,val,trainval,test}.txt`` and their per-class files; returns ``root/VOCdevkit``."""
    voc = Path(root) / "VOCdevkit" / "VOC2007"
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (voc / "Annotations").mkdir(parents=True, exist_ok=True)
    image_id = 0
    for split, count in (("trainval", trainval), ("test", test)):
        ids = [f"{image_id + i + 1:06d}" for i in range(count)]
        image_id += count
        labels = voc_labels(count, offset=0 if split == "trainval" else 7)
        parts = {split: slice(None)} if split == "test" else \
            {"trainval": slice(None), "train": slice(0, count // 2), "val": slice(count // 2, None)}
        for name, rows in parts.items():
            _write_voc_lists(main, name, ids[rows], labels[rows])
        for i, image in enumerate(ids):
            write_image(voc / "JPEGImages" / f"{image}.jpg", int(np.argmax(labels[i] == 1)), seed=int(image),
                        size=size)
            (voc / "Annotations" / f"{image}.xml").write_text(_voc_annotation(image, labels[i], size))
    return voc.parent


def _write_voc_lists(main: Path, split: str, ids: list[str], labels: np.ndarray) -> None:
    (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for c, name in enumerate(VOC_CLASSES):
        # the official files pad positive labels with two spaces ("000012  1")
        (main / f"{name}_{split}.txt").write_text(
            "".join(f"{i} {'' if v < 0 else ' '}{v}\n" for i, v in zip(ids, labels[:, c])))


def _voc_annotation(image: str, labels: np.ndarray, size: int) -> str:
    objects = "".join(
        f"<object><name>{VOC_CLASSES[c]}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(labels[c] == 0)}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{size}</xmax>"
        f"<ymax>{size}</ymax></bndbox></object>" for c in np.flatnonzero(labels >= 0))
    return (f"<annotation><folder>VOC2007</folder><filename>{image}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size><segmented>0</segmented>{objects}</annotation>\n")


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


def class_pixels(label: int, seed: int, size: int = 32) -> np.ndarray:
    """``[size, size, 3]`` uint8: the class's colour plus noise (what :func:`write_image` saves)."""
    rng = np.random.default_rng(seed)
    colour = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 151 + 160) % 256], dtype=np.float64)
    return np.clip(colour + rng.normal(0, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)


def make_cifar_pickles(root: str | os.PathLike, dataset: str = "cifar10", train_per_class: int = 10,
                       test_per_class: int = 2) -> Path:
    """torchvision's ``cifar-10-batches-py`` (5 train batches, ``test_batch``, ``batches.meta``) or
    ``cifar-100-python`` (``train``, ``test``, ``meta`` with fine and coarse labels); returns the folder."""
    from wordnet_hierarchy.cifar import (CIFAR10_CLASSES, CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES,
                                         cifar100_coarse_labels)

    if dataset not in ("cifar10", "cifar100"):
        raise ValueError(f"unknown CIFAR {dataset!r}: use cifar10 or cifar100")
    classes = CIFAR10_CLASSES if dataset == "cifar10" else CIFAR100_FINE_CLASSES
    folder = Path(root) / ("cifar-10-batches-py" if dataset == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def batch(per_class: int, offset: int, part: slice = slice(None)) -> dict:
        labels = [c for n in range(per_class) for c in range(len(classes))][part]
        data = np.stack([class_pixels(c, offset + i).transpose(2, 0, 1).reshape(-1) for i, c in enumerate(labels)])
        entry = {"data": data, ("labels" if dataset == "cifar10" else "fine_labels"): labels}
        if dataset == "cifar100":
            coarse = list(cifar100_coarse_labels())
            entry["coarse_labels"] = [coarse[c] for c in labels]
        return entry

    def dump(name: str, entry: dict) -> None:
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh)

    if dataset == "cifar10":
        total = train_per_class * len(classes)
        for i in range(5):
            dump(f"data_batch_{i + 1}", batch(train_per_class, 100 * i, slice(i * total // 5, (i + 1) * total // 5)))
        dump("test_batch", batch(test_per_class, 90_000))
        dump("batches.meta", {"label_names": list(classes), "num_cases_per_batch": total // 5})
    else:
        dump("train", batch(train_per_class, 0))
        dump("test", batch(test_per_class, 90_000))
        dump("meta", {"fine_label_names": list(classes), "coarse_label_names": list(CIFAR100_COARSE_CLASSES)})
    return folder


def coco_categories() -> list[dict]:
    """COCO 2017's 80 categories with their official (non-consecutive) ids (torchvision's metadata)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    names = MaskRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]  # index = COCO category id
    return [{"id": i, "name": name, "supercategory": "object"} for i, name in enumerate(names)
            if name not in ("__background__", "N/A")]


def make_coco(root: str | os.PathLike, train_images: int = 8, val_images: int = 4, size: int = 64) -> Path:
    """``root/coco/{train2017,val2017}/<id>.jpg`` and ``annotations/instances_{train,val}2017.json``
    (COCO format: one box and polygon per image); returns ``root/coco`` (detectron2's layout)."""
    coco = Path(root) / "coco"
    categories = coco_categories()
    image_id = 0
    for split, count in (("train2017", train_images), ("val2017", val_images)):
        images, annotations = [], []
        for n in range(count):
            image_id += 1
            category = categories[image_id % len(categories)]
            write_image(coco / split / f"{image_id:012d}.jpg", category["id"], seed=image_id, size=size)
            images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": size, "height": size})
            lo, hi = size // 4, 3 * size // 4
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category["id"], "iscrowd": 0,
                                "bbox": [lo, lo, hi - lo, hi - lo], "area": float((hi - lo) ** 2),
                                "segmentation": [[lo, lo, hi, lo, hi, hi, lo, hi]]})
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"info": {"description": "synthetic COCO-format fixture"}, "licenses": [], "images": images,
             "annotations": annotations, "categories": categories}))
    return coco


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
