"""Shared fixtures: tiny real-layout datasets generated on disk, an isolated cache."""
import os

import numpy as np
import pytest
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
