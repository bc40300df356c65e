"""The catalogue of bad inputs (README, Troubleshooting): one clear message naming problem and fix,
and no partial output. Each case returns the exception raised; the test checks type, message and
that nothing half-written was left behind."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_image_folder
from ifnd.config import ConfigError, TrainConfig
from ifnd.data import DataError
from ifnd.train import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parent.parent


def config(tmp_path, data, **overrides) -> TrainConfig:
    base = dict(run_dir=str(tmp_path / "run"), data_root=str(data), arch="convnet4", epochs=2, batch_size=40,
                warmup_epochs=0, progress=False, threads=1, knn_k=5, cluster_numbers=[5])
    base.update(overrides)
    return TrainConfig(**base)


def folder_with(tmp_path, name: str, writer) -> Path:
    root = write_image_folder(tmp_path / "data", per_class=4)
    writer(root / "train" / "cat" / name)
    return root


def case_missing_data_root(tmp_path):
    Trainer(config(tmp_path, tmp_path / "nowhere"))


def case_empty_data_root(tmp_path):
    (tmp_path / "empty").mkdir()
    Trainer(config(tmp_path, tmp_path / "empty"))


def case_wrong_folder_layout(tmp_path):
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(flat / "0.png")
    (tmp_path / "flat" / "test").mkdir()
    Trainer(config(tmp_path, tmp_path / "flat"))


def case_corrupt_image(tmp_path):
    Trainer(config(tmp_path, folder_with(tmp_path, "broken.png", lambda p: p.write_bytes(b"not an image"))))


def case_non_rgb_image(tmp_path):
    sixteen_bit = lambda p: Image.fromarray(np.zeros((32, 32), dtype=np.uint16)).save(p)
    Trainer(config(tmp_path, folder_with(tmp_path, "deep.png", sixteen_bit)))


def case_unknown_wnid(tmp_path):
    from wordnet_hierarchy import RelabeledDataset
    from torchvision.datasets import ImageFolder

    root = write_image_folder(tmp_path / "imagenet", classes=["n01440764", "n99999999"], per_class=1, splits=("train",))
    RelabeledDataset(ImageFolder(str(root / "train")), depth=3)


def case_wordnet_not_installed(tmp_path, monkeypatch):
    from wordnet_hierarchy.wordnet_source import open_wordnet

    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path / "no-wordnet"))
    open_wordnet(tmp_path / "corpus")


def case_more_clusters_than_samples(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, detector="ifnd", objective="elimination", cluster_numbers=[500],
                   refresh_every=1))


def case_acceptance_rate_outside_unit_interval(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, detector="ifnd", objective="elimination", acceptance_final=1.2))


def case_pcl_r_too_large(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, detector="pcl", cluster_numbers=[50], refresh_every=1,
                   pcl_negatives=30))


def case_queue_not_multiple_of_batch(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, framework="moco", queue_size=100))


def case_unknown_framework(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, framework="byol"))


def case_unknown_profile(tmp_path):
    from reproduce.profiles import get_profile

    get_profile("huge")


def case_checkpoint_of_another_architecture(tmp_path):
    from eval.checkpoints import load_backbone
    from ifnd.models import Encoder

    path = tmp_path / "ckpt.pt"
    state = {"encoder." + k: v for k, v in Encoder("resnet18", cifar_stem=True).state_dict().items()}
    torch.save({"config": {"arch": "resnet18", "cifar_stem": True}, "epoch": 1, "model": state}, path)
    load_backbone(path, arch="resnet50")


def case_nan_loss(tmp_path, tiny_cifar, monkeypatch):
    from ifnd.frameworks.simclr import SimCLR

    original = SimCLR.training_loss
    calls = {"n": 0}

    def goes_nan(self, *args):
        calls["n"] += 1
        loss = original(self, *args)
        return loss * float("nan") if calls["n"] > 4 else loss  # 3 steps per epoch: NaN in epoch 2

    monkeypatch.setattr(SimCLR, "training_loss", goes_nan)
    Trainer(config(tmp_path, tiny_cifar)).run()


def case_detectron2_missing(tmp_path, monkeypatch):
    import importlib.util

    from eval.detection.launch import require_detectron2

    find_spec = importlib.util.find_spec  # detectron2 may be installed (CI installs it): hide it
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "detectron2" else find_spec(name, *a))
    require_detectron2()


def case_slurm_config_without_partition(tmp_path):
    from reproduce.launchers import load_cluster_config

    (tmp_path / "cluster.toml").write_text("[slurm]\ntimeout_min = 60\n")
    load_cluster_config(tmp_path / "cluster.toml", "paper")


def case_unwritable_results_directory(tmp_path, tiny_cifar):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    Trainer(config(tmp_path, tiny_cifar, run_dir=str(blocked / "run"), epochs=1)).run()


def case_fused_kernel_without_a_gpu(tmp_path, tiny_cifar):
    Trainer(config(tmp_path, tiny_cifar, device="cpu", loss_kernel="fused"))


def cifar_archive(tmp_path, tiny_cifar) -> Path:
    """``cifar10-jpeg.tar.gz`` of the tiny CIFAR-10 layout, in a folder of its own."""
    import tarfile

    archive = tmp_path / "archive" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar10-jpeg")
    return archive


def case_truncated_archive(tmp_path, tiny_cifar):
    archive = cifar_archive(tmp_path, tiny_cifar)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    Trainer(config(tmp_path, archive.parent))


def case_archive_not_matching_its_checksum(tmp_path, tiny_cifar):
    archive = cifar_archive(tmp_path, tiny_cifar)
    (archive.parent / "cifar10-jpeg.sha256").write_text("0" * 64 + "  cifar10-jpeg.tar.gz\n")
    Trainer(config(tmp_path, archive))


def case_existing_run_directory_without_resume(tmp_path, tiny_cifar):
    from ifnd.train import choose_run_dir

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text("{}")
    choose_run_dir(config(tmp_path, tiny_cifar, run_dir=str(tmp_path / "old")), False, ["--run-dir", "old"])


def case_resume_without_a_run(tmp_path, tiny_cifar):
    from ifnd.train import choose_run_dir

    choose_run_dir(config(tmp_path, tiny_cifar, run_dir=str(tmp_path / "typo")), True, ["--run-dir", "typo"])


def case_unwritable_store(tmp_path):
    from reproduce.store import Store

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    Store("mini", blocked, tmp_path / "runs").check_writable()


CATALOGUE = [  # (case, exception type, message pattern: the problem ... the fix)
    (case_missing_data_root, DataError, r"not found at .*nowhere: expected .*train/<class>"),
    (case_empty_data_root, DataError, r"no train folder in .*empty: expected"),
    (case_wrong_folder_layout, DataError, r"has no class folders: expected .*<class>/<image>"),
    (case_corrupt_image, DataError, r"cannot decode image .*broken.png.*replace or remove"),
    (case_non_rgb_image, DataError, r"deep.png has image mode I;16: convert it to 8-bit RGB"),
    (case_unknown_wnid, ValueError, r"unknown wnid n99999999.*expected ImageNet-1K synset folders"),
    (case_wordnet_not_installed, Exception, r"wordnet-base"),
    (case_more_clusters_than_samples, ValueError, r"cluster numbers \[500\] do not fit 120 training samples"),
    (case_acceptance_rate_outside_unit_interval, ConfigError, r"acceptance_final=1.2 is outside \[0, 1\]"),
    (case_pcl_r_too_large, ConfigError, r"pcl_negatives r=30 must be smaller than k=50 .* use --pcl-negatives 10"),
    (case_queue_not_multiple_of_batch, ConfigError, r"queue size 100 is not a multiple of the batch size 40.*--queue-size 80"),
    (case_unknown_framework, ConfigError, r"unknown framework 'byol': choose one of simclr"),
    (case_fused_kernel_without_a_gpu, ConfigError, r"loss_kernel='fused' runs Triton kernels on a CUDA device, not on cpu.*--loss-kernel pairs"),
    (case_unknown_profile, ValueError, r"unknown profile 'huge': choose one of"),
    (case_checkpoint_of_another_architecture, Exception, r"resnet18.*resnet50"),
    (case_nan_loss, TrainingDiverged, r"loss became nan at epoch 2, step 2.*last good checkpoint \(after epoch 1\)"),
    (case_detectron2_missing, RuntimeError, r"pip install --no-build-isolation 'git\+https://github.com/facebookresearch/detectron2.git'"),
    (case_slurm_config_without_partition, ValueError, r"has no partition: set partition"),
    (case_unwritable_results_directory, OSError, r"cannot write to .*blocked"),
    (case_unwritable_store, OSError, r"cannot write to .*blocked/mini/store \(.*\): choose a writable --results-dir"),
    (case_truncated_archive, DataError,
     r"archive .*cifar10-jpeg.tar.gz is truncated or damaged .*copy or download it again"),
    (case_archive_not_matching_its_checksum, DataError,
     r"cifar10-jpeg.tar.gz does not match its checksum file .*cifar10-jpeg.sha256 .*copy or download it again"),
    (case_existing_run_directory_without_resume, ConfigError, r"old already holds a run \(config.json\): continue it "
                                                              r"with --resume, or choose a new --run-dir"),
    (case_resume_without_a_run, ConfigError, r"nothing to resume in .*typo \(no config.json\).*drop --resume"),
]


@pytest.mark.parametrize("case,error,pattern", CATALOGUE, ids=[c[0].__name__[5:] for c in CATALOGUE])
def test_bad_input_gives_one_clear_message(case, error, pattern, tmp_path, tiny_cifar, monkeypatch, request):
    import inspect

    wanted = inspect.signature(case).parameters
    kwargs = {name: {"tmp_path": tmp_path, "tiny_cifar": tiny_cifar, "monkeypatch": monkeypatch}[name] for name in wanted}
    with pytest.raises(error, match=pattern):
        case(**kwargs)
    run = tmp_path / "run"
    if case is case_nan_loss:
        kept = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
        assert kept["epoch"] == 1 and not (run / "final.json").exists()
    else:
        assert not (run / "final.json").exists() and not (run / "checkpoints").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ifnd.train", "--data-root", str(tmp_path / "nowhere"),
                             "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: cifar10 not found at")
    assert not (tmp_path / "run").exists()


def test_readme_troubleshooting_lists_every_case():
    """The README's Troubleshooting table has a row for each case of the catalogue."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")}
    missing = [c[0].__name__[5:].replace("_", " ") for c in CATALOGUE
               if c[0].__name__[5:].replace("_", " ") not in rows]
    assert not missing, f"README Troubleshooting lacks rows for {missing}"
