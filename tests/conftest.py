"""Shared fixtures: tiny real-layout datasets generated on disk, an isolated cache."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-array caches go to a per-session temporary folder, never to the user's."""
    monkeypatch.setenv("IFND_CACHE", str(tmp_path_factory.getbasetemp() / "ifnd-cache"))


def write_image_folder(root, classes=CLASSES, per_class=12, size=32, splits=("train", "test"), seed=0):
    """``root/<split>/<class>/<n>.png``: each class a noisy colour, so classes are learnable."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = rng.integers(0, 256, 3)
            for i in range(per_class):
                pixels = np.clip(colour + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture
def tiny_cifar(tmp_path):
    """A CIFAR-10-layout folder with 12 train and 12 test images per class."""
    return write_image_folder(tmp_path / "tiny-cifar")


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: needs a running SLURM cluster (scripts/slurm-single-node start)")
    config.addinivalue_line("markers", "detectron2: needs detectron2 (README, Detection)")


def require(problem: str | None) -> None:
    """Stop a test whose engine is missing: a failure in CI (``CI=true``), a skip with the reason elsewhere."""
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (CI=true: this test must run)")
    pytest.skip(problem)


def moco_job(data, seed: int = 0):
    """A MoCo v2 pre-training task on the image folder ``data`` with 2 BatchNorm groups and a
    global batch of 16: one process, or 2 processes of 8, train the same run."""
    from ifnd.config import TrainConfig
    from reproduce.execute import Task
    from reproduce.runs import TrainRun

    config = TrainConfig(dataset="cifar10", data_root=str(data), arch="convnet4", framework="moco", epochs=2,
                         batch_size=16, lr=0.1, warmup_epochs=0, queue_size=32, moco_bn_splits=2, seed=seed,
                         progress=False)
    return Task(TrainRun(config, frozenset()))


def final_weights(store, key: str) -> dict:
    """A run's last checkpoint (``store``: a StoreSpec) without BatchNorm's running statistics,
    which each process of a multi-process job keeps for its own groups."""
    state = torch.load(store.open().train_dir(key) / "checkpoints" / "last.pt", weights_only=False)["model"]
    return {name: value for name, value in state.items()
            if not name.endswith(("running_mean", "running_var", "num_batches_tracked"))}
