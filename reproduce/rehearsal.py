"""Synthetic data sets in the real on-disk layouts, for ``--profile rehearsal``.

``python -m reproduce make-rehearsal-data DIR`` writes, under ``DIR``, what a real user points
``reproduce/paths.toml`` at (key: folder):

================  ==========================================================================
cifar10           ``cifar-10-batches-py`` (torchvision's pickles)
cifar100          ``cifar-100-python`` (fine and coarse labels)
imagenet          ``train/<wnid>/<wnid>_<n>.JPEG``, ``val/<wnid>/ILSVRC2012_val_<n>.JPEG`` for the
                  1000 real wnids (so Table 5's WordNet depth relabelings run for real)
imagenet_subsets  SimCLR's ``1percent.txt`` / ``10percent.txt`` (one training file name a line)
voc07             ``VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``
places205         ``data/vision/torralba/deeplearning/images256`` + ``trainvalsplit_places205``,
                  205 classes
coco              ``coco/{train2017,val2017,annotations/instances_*2017.json}`` (COCO format)
================  ==========================================================================

plus ``DIR/paths.toml`` naming them (usable with ``--paths``). Images are a few tiny JPEGs per
class (colour by class plus noise, :mod:`eval.fixtures`): they test paths, layouts and code, never
accuracy. The data are complete once ``DIR/rehearsal.json`` exists (written last).

``--profile rehearsal`` creates them on first use in :func:`default_dir`
(``$IFND_CACHE/rehearsal-data``, default ``~/.cache/ifnd/rehearsal-data``) unless
``$IFND_REHEARSAL_DATA`` names another folder, and sets the data sets' environment variables
(``IFND_IMAGENET`` ...) to them, as a user with real data would.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from reproduce.paths import DATASETS

MARKER = "rehearsal.json"
PLACES205_CLASSES = 205
# key -> folder under DIR (what paths.toml names)
FOLDERS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet",
           "imagenet_subsets": "imagenet_subsets", "voc07": "voc07/VOCdevkit", "places205": "places205",
           "coco": "coco"}


def default_dir() -> Path:
    from ifnd.data import cache_dir

    return Path(os.environ.get("IFND_REHEARSAL_DATA") or cache_dir() / "rehearsal-data")


def is_complete(root: str | os.PathLike) -> bool:
    return (Path(root) / MARKER).is_file()


def write(root: str | os.PathLike, train_per_class: int = 2, val_per_class: int = 1, size: int = 20) -> dict:
    """Write every data set under ``root`` (into ``root.partial``, renamed when complete); returns the paths."""
    from eval import fixtures
    from wordnet_hierarchy import imagenet_wnids

    root = Path(root).expanduser().resolve()
    if is_complete(root):
        return paths_of(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not rehearsal data: give an empty or new folder")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    wnids = imagenet_wnids()
    fixtures.make_cifar_pickles(partial / FOLDERS["cifar10"], "cifar10", train_per_class=10, test_per_class=5)
    fixtures.make_cifar_pickles(partial / FOLDERS["cifar100"], "cifar100", train_per_class=2, test_per_class=1)
    fixtures.make_imagenet_folders(partial / FOLDERS["imagenet"], wnids, train_per_class, val_per_class, size)
    subsets = partial / FOLDERS["imagenet_subsets"]
    subsets.mkdir(parents=True)
    for percent, per_class in ((1, 1), (10, train_per_class)):  # as many images per class as there are
        fixtures.make_subset_file(subsets / f"{percent}percent.txt", wnids, min(per_class, train_per_class))
    fixtures.make_vocdevkit(partial / "voc07", trainval=20, test=15, size=size)
    places = [f"{chr(ord('a') + i % 26)}/scene_{i:03d}" for i in range(PLACES205_CLASSES)]
    fixtures.make_places205(partial / FOLDERS["places205"], places, train_per_class, val_per_class, size)
    fixtures.make_coco(partial, size=64)
    (partial / "paths.toml").write_text(
        "# Synthetic rehearsal data (python -m reproduce make-rehearsal-data); relative to this file.\n[data]\n"
        + "".join(f'{key} = "{folder}"\n' for key, folder in FOLDERS.items()))
    (partial / MARKER).write_text(json.dumps({"folders": FOLDERS, "train_per_class": train_per_class,
                                              "val_per_class": val_per_class, "size": size}, indent=1))
    if root.exists():
        root.rmdir()
    partial.rename(root)
    return paths_of(root)


def paths_of(root: str | os.PathLike) -> dict[str, str]:
    return {key: str(Path(root) / folder) for key, folder in FOLDERS.items()}


def environment(root: str | os.PathLike) -> dict[str, str]:
    """The environment variables a user sets for real data (:data:`reproduce.paths.DATASETS`), at ``root``."""
    return {DATASETS[key][1]: path for key, path in paths_of(root).items()}


def use(root: str | os.PathLike | None = None, say=print) -> Path:
    """Point this process and its children at the rehearsal data, writing them first if needed."""
    root = Path(root or default_dir()).expanduser()
    if not is_complete(root):
        say(f"rehearsal: writing synthetic data sets to {root} (once; python -m reproduce make-rehearsal-data "
            "DIR writes them elsewhere, $IFND_REHEARSAL_DATA points here at them)")
        write(root)
    os.environ.update(environment(root))
    return root
