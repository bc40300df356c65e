"""Datasets decoded once into uint8 arrays held in memory, with sample indices.

Sources, all read from disk (nothing is ever downloaded):

* ``cifar10``: the project's JPEG archive ``cifar10-jpeg.tar.gz`` (default
  ``../shared/data/cifar10-jpeg.tar.gz`` beside the checkout), its extracted folder
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``), or torchvision's ``cifar-10-batches-py``;
* ``cifar100``: torchvision's ``cifar-100-python``;
* ``folder``: an ImageNet-style ``train/<class>/*`` and ``val/<class>/*`` (or ``test``) tree of
  equally sized images; the trainer streams such trees instead (:class:`ifnd.sources.FolderSource`).

The root comes from the ``data_root`` option, else ``$IFND_DATA_ROOT``, else the default above;
for CIFAR-10 it may also be a folder that holds ``cifar10-jpeg.tar.gz``. An archive with a
``.sha256`` file beside it (``cifar10-jpeg.sha256`` or ``cifar10-jpeg.tar.gz.sha256``) is checked
against it once; the check is remembered in the cache until the archive's size or time changes.
Decoded arrays are cached as ``.npz`` under ``$IFND_CACHE`` (default ``~/.cache/ifnd``), keyed
by the source's path, size and modification time, written atomically (each write is announced
once, with its size: the CIFAR-10 training split takes about 150 MB).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ifnd.io import atomic_save_npz, atomic_write_json

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CIFAR10_ARCHIVE = "cifar10-jpeg.tar.gz"
DEFAULT_CIFAR10 = PROJECT_ROOT.parent / "shared" / "data" / CIFAR10_ARCHIVE
DATASETS = ("cifar10", "cifar100", "folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# Per-channel statistics of the training split (0-1 scale).
STATS = {
    "cifar10": ((0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)),  # JPEG copy, shared/data/README.md
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet's
}
LAYOUTS = {
    "cifar10": "cifar10-jpeg.tar.gz, a folder with train/<class>/*.jpg and test/<class>/*.jpg "
               "(optionally under cifar10-jpeg/), or torchvision's cifar-10-batches-py",
    "cifar100": "torchvision's cifar-100-python folder (train, test, meta pickles)",
    "folder": "train/<class>/<image> and val/<class>/<image> (ImageNet layout)",
}


class DataError(ValueError):
    """Bad or missing data, with the layout that was expected."""


@dataclass
class ImageArray:
    """A split in memory: ``images`` uint8 ``[N, H, W, 3]``, ``labels`` long ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def subset(self, indices: torch.Tensor) -> "ImageArray":
        return ImageArray(self.images[indices], self.labels[indices], self.classes)


def resolve_root(dataset: str, data_root: str | os.PathLike | None) -> Path:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    root = data_root or os.environ.get("IFND_DATA_ROOT") or (DEFAULT_CIFAR10 if dataset == "cifar10" else None)
    if root is None:
        raise DataError(f"no data root given for {dataset}: pass --data-root or set IFND_DATA_ROOT "
                        f"to a path holding {LAYOUTS[dataset]}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{dataset} not found at {root}: expected {LAYOUTS[dataset]} "
                        "(set --data-root or IFND_DATA_ROOT)")
    if dataset == "cifar10" and root.is_dir() and (root / CIFAR10_ARCHIVE).is_file() and not holds_cifar10(root):
        root = root / CIFAR10_ARCHIVE
    if root.is_file():
        verify_archive(root)
    return root


def holds_cifar10(root: Path) -> bool:
    """Whether the folder ``root`` holds CIFAR-10 as files (not only as the archive)."""
    return any((root / name).exists() for name in ("train", "cifar10-jpeg", "cifar-10-batches-py", "data_batch_1"))


def cache_dir() -> Path:
    return Path(os.environ.get("IFND_CACHE", Path.home() / ".cache" / "ifnd"))


def _checksum_file(archive: Path) -> Path | None:
    stem = archive.name[:-len(".tar.gz")] if archive.name.endswith(".tar.gz") else archive.stem
    return next((p for p in (archive.with_name(archive.name + ".sha256"), archive.with_name(stem + ".sha256"))
                 if p.is_file()), None)


def file_sha256(path: Path) -> str:
    """The file's sha256, remembered in the cache (keyed by path, size and modification time)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    remembered = cache_dir() / "sha256" / f"{path.name}-{key}.json"
    try:
        return json.loads(remembered.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    try:
        atomic_write_json(remembered, {"path": str(path.resolve()), "sha256": digest.hexdigest()})
    except OSError:
        pass  # an unwritable cache only costs hashing again next time
    return digest.hexdigest()


def verify_archive(archive: Path) -> None:
    """Check ``archive`` against the ``.sha256`` file beside it, if there is one."""
    listed = _checksum_file(archive)
    if listed is None:
        return
    words = listed.read_text().split()
    if not words:
        return
    expected = words[0].lower()
    actual = file_sha256(archive)
    if actual != expected:
        raise DataError(f"{archive} does not match its checksum file {listed} (sha256 {actual[:12]}..., expected "
                        f"{expected[:12]}...): the copy is incomplete or damaged; copy or download it again")


def source_identity(dataset: str, data_root: str | os.PathLike | None = None) -> dict:
    """Which copy of a data set a run read: its path, and for an archive its size and sha256."""
    root = resolve_root(dataset, data_root)
    identity = {"dataset": dataset, "path": str(root.resolve())}
    if root.is_file():
        identity.update(bytes=root.stat().st_size, sha256=file_sha256(root))
    return identity


def _announce_cache(path: Path, what: str) -> None:
    size = path.stat().st_size / 1e6
    print(f"cached decoded {what} ({size:.0f} MB) in {path}: later runs start from it; set IFND_CACHE to keep "
          f"it elsewhere, delete it to free the space", file=sys.stderr, flush=True)


def load_split(dataset: str, split: str, data_root: str | os.PathLike | None = None) -> ImageArray:
    """Decode (once, then from the cache) the ``train`` or ``test`` split of a dataset."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    root = resolve_root(dataset, data_root)
    stat = root.stat()
    key = hashlib.sha256(f"{dataset}|{root.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{split}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"{dataset}-{split}-{key}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as npz:
            return ImageArray(torch.from_numpy(npz["images"]), torch.from_numpy(npz["labels"]).long(),
                              list(npz["classes"]))
    images, labels, classes = _decode(dataset, root, split)
    if len(labels) == 0:
        raise DataError(f"{dataset} at {root} has no {split} images: expected {LAYOUTS[dataset]}")
    atomic_save_npz(cached, images=images, labels=labels, classes=np.array(classes))
    _announce_cache(cached, f"{dataset} {split} images")
    return ImageArray(torch.from_numpy(images), torch.from_numpy(labels).long(), classes)


def _decode(dataset: str, root: Path, split: str):
    if dataset == "cifar100":
        return _torchvision_pickles(root / "cifar-100-python" if (root / "cifar-100-python").is_dir() else root,
                                    ["train"] if split == "train" else ["test"], "fine_labels", "meta", "fine_label_names")
    if dataset == "cifar10" and root.is_file():
        return _tar_folder(root, split)
    if dataset == "cifar10" and ((root / "cifar-10-batches-py").is_dir() or (root / "data_batch_1").exists()):
        batches = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        return _torchvision_pickles(batches, files, "labels", "batches.meta", "label_names")
    folder = _split_folder(root, split, dataset)
    return _image_folder(folder)


def _split_folder(root: Path, split: str, dataset: str) -> Path:
    base = root / "cifar10-jpeg" if (root / "cifar10-jpeg").is_dir() else root
    names = ["train"] if split == "train" else ["test", "val"]
    for name in names:
        if (base / name).is_dir():
            return base / name
    raise DataError(f"no {'/'.join(names)} folder in {base}: expected {LAYOUTS[dataset]}")


def _decode_image(data: bytes | Path, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            img.load()
            if img.mode not in ("RGB", "L", "CMYK", "P", "RGBA"):
                raise DataError(f"{where} has image mode {img.mode}: convert it to 8-bit RGB")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot decode image {where} ({err}): replace or remove the corrupt file") from err


def _stack(images: list[np.ndarray], labels: list[int], classes: list[str], where: Path):
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise DataError(f"images under {where} have different sizes {sorted(shapes)[:3]}: the in-memory "
                        "loader needs one size (resize them, or use the streaming folder loader)")
    array = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
    return array, np.asarray(labels, dtype=np.int64), classes


def _image_folder(folder: Path):
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{folder} has no class folders: expected {folder}/<class>/<image>")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_decode_image(path, str(path)))
                labels.append(label)
    return _stack(images, labels, classes, folder)


def _tar_folder(archive: Path, split: str):
    """Decode ``[cifar10-jpeg/]<split>/<class>/<file>`` members straight from the archive."""
    members: dict[str, list[tuple[str, bytes]]] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 3 and parts[-3] == split:
                    members.setdefault(parts[-2], []).append((member.name, tar.extractfile(member).read()))
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise DataError(f"archive {archive} is truncated or damaged ({err}): copy or download it again "
                        f"(and check it with sha256sum)") from err
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"cannot read archive {archive} ({err}): expected {LAYOUTS['cifar10']}") from err
    classes = sorted(members)
    images, labels = [], []
    for label, name in enumerate(classes):
        for member_name, data in sorted(members[name]):
            images.append(_decode_image(data, f"{archive}:{member_name}"))
            labels.append(label)
    return _stack(images, labels, classes, archive)


def _torchvision_pickles(folder: Path, files: list[str], label_key: str, meta: str, names_key: str):
    missing = [name for name in files + [meta] if not (folder / name).exists()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}: expected torchvision's CIFAR pickle layout")
    images, labels = [], []
    for name in files:
        with open(folder / name, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(entry[label_key])
    with open(folder / meta, "rb") as fh:
        classes = list(pickle.load(fh, encoding="latin1")[names_key])
    return np.concatenate(images), np.asarray(labels, dtype=np.int64), classes


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of ``size`` samples with classes as balanced as the data allow, in sorted order."""
    n = labels.shape[0]
    if not 0 < size <= n:
        raise DataError(f"subset of {size} samples asked from a split of {n}: choose 1..{n}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    ranked = torch.empty(n, dtype=torch.long)
    # Rank each sample within its class, then take the lowest ranks first: round-robin over classes.
    sorted_labels, by_class = labels[order].sort(stable=True)
    starts = torch.searchsorted(sorted_labels, sorted_labels, right=False)
    ranked[order[by_class]] = torch.arange(n) - starts
    chosen = torch.sort(ranked * n + torch.arange(n)).indices[:size]
    return chosen.sort().values


def training_indices(labels: torch.Tensor, train_subset: int, seed: int) -> torch.Tensor:
    """The samples of a training split that a run trains on, in its order (the rows of its detector state).

    ``labels`` are the split's labels; ``train_subset`` and ``seed`` are the run's config fields:
    0 is the whole split, else a class-balanced subset of that size drawn with ``seed``.
    """
    if not train_subset:
        return torch.arange(labels.shape[0])
    return stratified_subset(labels, train_subset, seed)


def channel_stats(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = STATS[dataset]
    return torch.tensor(mean), torch.tensor(std)
