"""Relabel ImageNet-1K and CIFAR-10 by depth in the WordNet hypernym tree (Table 5).

The paper (Appendix D) traces each ImageNet class's hypernyms up to
``entity``, builds a tree rooted at ``entity`` with the 1000 classes as
leaves, and re-defines the classes at depths {3, 5, 7, 9, 18}, reporting
9 / 36 / 206 / 486 / 1000 classes.  It leaves open

* which path to use when a synset has several hypernyms (304 of the 1000
  classes have more than one root path, of lengths 4 to 18 edges),
* whether ``entity`` sits at depth 0 or 1, and
* what a leaf shallower than ``d`` becomes at depth ``d``.

Rule used here: each synset's parent is its hypernym with the smallest NLTK
synset name (instance hypernyms would count too, but no class or ancestor
has one); ``entity`` is depth 0; the class of a leaf at depth ``d`` is its
ancestor at depth ``d``, or the leaf itself when it is shallower.  This is
exactly ``hypernym_paths()[0]`` in the NLTK releases of the paper's time,
whose ``Synset.hypernyms()`` sorted by name (NLTK 3.9 dropped the sort; the
order now follows set iteration and changes with ``PYTHONHASHSEED``, giving
9-12 / 32-39 / 209-219 / 498-519 classes at depths 3/5/7/9 from run to run).
It is the only reading tried that reproduces the paper, and exactly
(``python -m wordnet_hierarchy readings`` recomputes this table):

============================================  ==  ==  ===  ===  ====
reading (ImageNet classes at depth)            3   5    7    9    18
============================================  ==  ==  ===  ===  ====
paper, Table 5                                 9  36  206  486  1000
name-sorted hypernyms, first path (chosen)     9  36  206  486  1000
same, but entity = depth 1                     5  17   79  345   999
name-sorted hypernyms, last path              10  35  224  526  1000
WordNet file order, first path                10  34  223  500  1000
WordNet file order, last path                  9  37  206  512  1000
longest path                                   8  32  194  467  1000
shortest path                                 12  38  235  544  1000
============================================  ==  ==  ===  ===  ====

Everything here reads only the committed ``data/hierarchy.json``; WordNet
(Debian ``wordnet-base``) and NLTK are needed only to rebuild it
(``python -m wordnet_hierarchy build``).  New labels are numbered in order
of first appearance in the given class list, so at the finest depth they
equal the original labels.  CIFAR-10 classes are mapped to synsets as
documented in :mod:`wordnet_hierarchy.cifar`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from .cifar import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
    cifar100_coarse_labels,
)

DATA_FILE = Path(__file__).with_name("data") / "hierarchy.json"
MAX_DEPTH = 18
DATASETS = ("imagenet", "cifar10")
#: Table 5 of the paper: ImageNet-1K classes at each WordNet depth.
PAPER_IMAGENET_COUNTS = {3: 9, 5: 36, 7: 206, 9: 486, 18: 1000}

__all__ = [
    "CIFAR10_CLASSES", "CIFAR100_COARSE_CLASSES", "CIFAR100_FINE_CLASSES", "DATASETS",
    "MAX_DEPTH", "PAPER_IMAGENET_COUNTS", "RelabeledDataset", "ancestor", "cifar10_levels",
    "cifar100_coarse_labels", "imagenet_wnids", "num_classes", "relabel", "relabel_cifar10",
    "synset_label",
]


@functools.cache
def load_hierarchy() -> dict:
    """The committed hierarchy file, parsed (cached)."""
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def _dataset_section(dataset: str) -> dict:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    return load_hierarchy()[dataset]


def _check_depth(depth: int) -> None:
    if not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be an integer in 1..{MAX_DEPTH}, got {depth!r}")


def _unknown_class_message(key: str, dataset: str, where: str = "") -> str:
    where = f" in {where}" if where else ""
    if dataset == "imagenet":
        return f"unknown wnid {key}{where}: expected ImageNet-1K synset folders like n01440764"
    return f"unknown {dataset} class {key!r}{where}: expected one of {', '.join(CIFAR10_CLASSES)}"


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1K wnids in standard (label) order."""
    return list(load_hierarchy()["imagenet"]["classes"])


def ancestor(class_key: str, depth: int, dataset: str = "imagenet") -> str:
    """Wnid of the class's ancestor at ``depth`` (the class itself if shallower).

    ``class_key`` is an ImageNet wnid, or a CIFAR-10 class name for ``cifar10``.
    """
    _check_depth(depth)
    paths = _dataset_section(dataset)["paths"]
    if class_key not in paths:
        raise ValueError(_unknown_class_message(class_key, dataset))
    path = paths[class_key]
    return path[min(depth, len(path) - 1)]


def synset_label(wnid: str) -> str:
    """Human-readable, unique name of a synset on the stored paths (e.g. 'dog')."""
    return load_hierarchy()["synsets"][wnid][1]


def relabel(
    classes: list[str], depth: int, dataset: str = "imagenet"
) -> tuple[list[int], list[str]]:
    """New label of each class at ``depth``, and the new class names.

    Labels are 0..C-1, numbered by first appearance in ``classes``; the name
    at index ``i`` is the readable name of the ancestor that label ``i`` stands for.
    """
    ancestors = [ancestor(key, depth, dataset) for key in classes]
    label_of = {wnid: label for label, wnid in enumerate(dict.fromkeys(ancestors))}
    return [label_of[wnid] for wnid in ancestors], [synset_label(wnid) for wnid in label_of]


def num_classes(depth: int, dataset: str = "imagenet") -> int:
    """Number of classes of the whole dataset at ``depth``."""
    return len(set(relabel(_dataset_section(dataset)["classes"], depth, dataset)[0]))


def relabel_cifar10(depth: int) -> tuple[list[int], list[str]]:
    """New labels of the 10 CIFAR-10 classes (standard order) at ``depth``."""
    return relabel(CIFAR10_CLASSES, depth, "cifar10")


def cifar10_levels() -> list[tuple[int, int]]:
    """``(depth, num_classes)`` for each distinct CIFAR-10 granularity with >= 2 classes.

    Each level is given by the shallowest depth reaching that class count;
    deeper depths with the same count give the same partition (it is a tree).
    """
    levels: dict[int, int] = {}
    for depth in range(1, MAX_DEPTH + 1):
        levels.setdefault(num_classes(depth, "cifar10"), depth)
    return [(depth, count) for count, depth in levels.items() if count >= 2]


class RelabeledDataset:
    """A torchvision-style dataset whose labels are replaced by those at ``depth``.

    Wraps an ``ImageFolder`` (classes = wnid folders, ``train/n01440764/*.JPEG``)
    or, with ``dataset_name='cifar10'``, a CIFAR-10 dataset (classes = names).
    Items ``(sample, target, *extra)`` become ``(sample, new_label, *extra)``.
    ``class_wnids`` overrides ``dataset.classes`` (the class key of each label).
    """

    def __init__(self, dataset, depth: int, class_wnids: list[str] | None = None,
                 dataset_name: str = "imagenet"):
        keys = list(dataset.classes if class_wnids is None else class_wnids)
        known = _dataset_section(dataset_name)["paths"]
        unknown = [key for key in keys if key not in known]
        if unknown:
            where = str(getattr(dataset, "root", type(dataset).__name__))
            raise ValueError(_unknown_class_message(unknown[0], dataset_name, where))
        self.dataset = dataset
        self.depth = depth
        self.label_map, self.classes = relabel(keys, depth, dataset_name)
        self.targets = [self.label_map[target] for target in dataset.targets]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        sample, target, *extra = self.dataset[index]
        return (sample, self.label_map[target], *extra)
