"""Where training batches come from: images held in memory, or streamed from an image folder.

Both give the trainer the same things: the training labels, one epoch of ``(index, views)``
batches for this process in the order of a given permutation, and evaluation-transform batches
of the training or test split (for clustering features and the kNN monitor).

* :class:`MemorySource` (CIFAR and small folders): uint8 arrays decoded once, the views made by
  the framework with batched tensor augmentation on the training device.
* :class:`FolderSource` (ImageNet-scale ``train/<class>/*``, ``val/<class>/*``): a DataLoader with
  per-sample torchvision transforms, MoCo v2's ImageNet augmentation (He et al., 2020; Chen et
  al., 2020d: random resized crop 224 with scale (0.2, 1), colour jitter (0.4, 0.4, 0.4, 0.1)
  p=0.8, grayscale p=0.2, Gaussian blur sigma in [0.1, 2] p=0.5, flip) and resize 256 + centre
  crop 224 for evaluation. The blur's kernel (23 px) and sigma scale with the crop size. Each
  sample's views are drawn from its own seed (the epoch's and the sample's), so they do not depend
  on the DataLoader workers or on how the batch is split over processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ifnd import augment as aug
from ifnd.data import (IMAGE_SUFFIXES, DataError, ImageArray, channel_stats, load_split, resolve_root,
                       training_indices)


class MemorySource:
    def __init__(self, train: ImageArray, test: ImageArray, dataset: str, device: torch.device):
        self.train_set, self.test_set = train, test
        self.labels, self.test_labels = train.labels, test.labels
        self.images = train.images.to(device)
        self.mean, self.std = channel_stats(dataset)
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def epoch(self, steps: Iterator[torch.Tensor], views_fn, gen: torch.Generator):
        """``(index, views)`` for each step's index tensor; ``views_fn(raw_uint8, gen)``."""
        for index in steps:
            index = index.to(self.device)
            yield index, views_fn(self.images[index], gen)

    def eval_batches(self, split: str, rows: slice, batch: int = 1024) -> Iterator[torch.Tensor]:
        images = self.images if split == "train" else self.test_set.images
        for part in images[rows].split(batch):
            yield aug.normalize(part.to(self.device), self.mean, self.std)


class _Folder(Dataset):
    """``root/<class>/<image>`` with sample indices; ``transform`` maps a PIL image to a tuple of views."""

    def __init__(self, root: Path, transform, classes: list[str] | None = None):
        self.classes = classes or sorted(d.name for d in root.iterdir() if d.is_dir())
        if not self.classes:
            raise DataError(f"{root} has no class folders: expected {root}/<class>/<image>")
        self.samples = [(p, label) for label, name in enumerate(self.classes) if (root / name).is_dir()
                        for p in sorted((root / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise DataError(f"{root} has class folders but no images ({', '.join(IMAGE_SUFFIXES)})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, _ = self.samples[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except OSError as err:
            raise DataError(f"cannot decode image {path} ({err}): replace or remove the corrupt file") from err
        return i, self.transform(image)


def moco_v2_transform(spec: aug.AugmentConfig, mean, std):
    from torchvision import transforms as T

    scale = spec.size / 224  # MoCo v2's kernel of 23 px and sigma in [0.1, 2] px are for 224-px crops
    blur = T.GaussianBlur(kernel_size=2 * max(1, round(11 * scale)) + 1,
                          sigma=(spec.blur_sigma[0] * scale, spec.blur_sigma[1] * scale))
    return T.Compose([
        T.RandomResizedCrop(spec.size, scale=spec.scale),
        T.RandomApply([T.ColorJitter(*spec.jitter)], p=spec.jitter_p),
        T.RandomGrayscale(p=spec.gray_p),
        T.RandomApply([blur], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean.tolist(), std.tolist()),
    ])


def eval_transform(size: int, mean, std):
    from torchvision import transforms as T

    return T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(mean.tolist(), std.tolist())])


class _Views:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, image):
        return [t(image) for t in self.transforms]


class _Seeded(Dataset):
    """``dataset`` whose item ``i`` is drawn under the torch seed ``(seed, i)`` (torchvision's random
    transforms use torch's global generator), leaving the caller's generator as it was."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + i) % 2**63)
            return self.dataset[i]


class FolderSource:
    """Streams an ImageNet-style tree; ``workers`` DataLoader processes decode and augment."""

    def __init__(self, root: Path, view_specs: list[aug.AugmentConfig], eval_size: int, device: torch.device,
                 workers: int, subset: int = 0, seed: int = 0):
        train_dir = root / "train"
        test_dir = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
        if not train_dir.is_dir() or test_dir is None:
            raise DataError(f"{root} lacks train/ and val/ folders: expected train/<class>/<image> and "
                            "val/<class>/<image> (ImageNet layout)")
        mean, std = channel_stats("folder")
        self.train_views = _Folder(train_dir, _Views([moco_v2_transform(s, mean, std) for s in view_specs]))
        classes = self.train_views.classes
        evaluate = eval_transform(eval_size, mean, std)
        self.train_eval = _Folder(train_dir, evaluate, classes)
        self.test_eval = _Folder(test_dir, evaluate, classes)
        labels = torch.tensor([label for _, label in self.train_views.samples])
        self.kept = training_indices(labels, subset, seed)
        self.labels = labels[self.kept]
        self.test_labels = torch.tensor([label for _, label in self.test_eval.samples])
        self.device, self.workers = device, workers

    def __len__(self) -> int:
        return len(self.labels)

    def _loader(self, dataset, order: list[int], batch: int):
        return DataLoader(torch.utils.data.Subset(dataset, order), batch_size=batch, num_workers=self.workers,
                          pin_memory=self.device.type == "cuda", generator=torch.Generator())  # not the global one

    def epoch(self, steps: Iterator[torch.Tensor], views_fn, gen: torch.Generator):
        """Per-sample transforms stand in for ``views_fn``; the epoch's seed comes from ``gen``."""
        steps = list(steps)
        if not steps:
            return
        order = self.kept[torch.cat(steps)].tolist()
        seed = int(torch.randint(2**62, (1,), generator=gen, device=gen.device))
        for (_, views), local in zip(self._loader(_Seeded(self.train_views, seed), order, len(steps[0])), steps):
            yield local.to(self.device), [v.to(self.device, non_blocking=True) for v in views]

    def eval_batches(self, split: str, rows: slice, batch: int = 256) -> Iterator[torch.Tensor]:
        dataset, order = (self.train_eval, self.kept[rows].tolist()) if split == "train" else \
            (self.test_eval, list(range(len(self.test_eval)))[rows])
        for _, images in self._loader(dataset, order, batch):
            yield images.to(self.device, non_blocking=True)


def build_source(cfg, device: torch.device, view_specs: list[aug.AugmentConfig]):
    """The source for a config: streamed for ``dataset='folder'``, in memory otherwise."""
    if cfg.dataset == "folder":
        return FolderSource(resolve_root("folder", cfg.data_root), view_specs, cfg.image_size, device,
                            cfg.workers, cfg.train_subset, cfg.seed)
    train = load_split(cfg.dataset, "train", cfg.data_root)
    train = train.subset(training_indices(train.labels, cfg.train_subset, cfg.seed))
    return MemorySource(train, load_split(cfg.dataset, "test", cfg.data_root), cfg.dataset, device)
