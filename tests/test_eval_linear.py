"""Linear evaluation: the classifier on separable features, top-k, the schedule, both CLI modes."""
import json

import numpy as np
import pytest
import torch

from eval import fixtures, linear
from eval.classifier import topk_correct


def _separable(num_classes=4, per_class=40, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 10
    y = np.repeat(np.arange(num_classes), per_class)
    return (centres[y] + rng.normal(size=(y.size, dim))).astype(np.float32) * 7 + 3, y


@pytest.mark.parametrize("feature_norm", ["standardize", "l2", "none"])
def test_probe_reaches_100_percent_on_linearly_separable_features(feature_norm):
    train_x, train_y = _separable(seed=0)
    test_x, test_y = train_x + np.random.default_rng(1).normal(size=train_x.shape).astype(np.float32), train_y
    lr = linear.FAST_LR if feature_norm != "none" else 0.001
    result = linear.linear_probe_features(train_x, train_y, test_x, test_y, epochs=10, lr=lr, batch_size=64,
                                          feature_norm=feature_norm)
    assert result["top1"] == 100.0 and result["top5"] == 100.0 and result["num_samples"] == test_y.size


def test_topk_counts_and_small_class_counts():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    assert topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 2, 5)) == [1, 2, 3]


def test_appendix_c_schedule():
    assert (linear.APPENDIX_C.epochs, linear.APPENDIX_C.batch_size, linear.APPENDIX_C.lr) == (100, 256, 10.0)
    assert (linear.APPENDIX_C.momentum, linear.APPENDIX_C.weight_decay) == (0.9, 0.0)
    assert linear.APPENDIX_C.milestones == linear.scaled_milestones(100) == (60, 80)
    assert linear.scaled_milestones(20) == (12, 16) and linear.scaled_milestones(1) == ()


def test_full_linear_evaluation_keeps_the_backbone_frozen(tmp_path):
    from eval import data
    from eval.checkpoints import load_backbone

    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=2, val_per_class=1)
    backbone, _ = load_backbone(fixtures.save_checkpoint(tmp_path / "ckpt.pt"))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    train = data.image_folder(root, "train", data.random_crop_transform(32))
    val = data.image_folder(root, "val", data.center_crop_transform(36, 32))
    schedule = linear.LinearSchedule(epochs=2, batch_size=4, lr=1.0)
    metrics = linear.linear_evaluation(backbone, train, val, 3, schedule, "cpu", workers=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())  # BN statistics included
    assert metrics["num_samples"] == 3 and np.isfinite(metrics["final_train_loss"])


def test_full_mode_cli_writes_its_json(tmp_path):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=2, val_per_class=1)
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "full.json"
    record = linear.main(["--checkpoint", str(path), "--data-root", str(root), "--resize-size", "36",
                          "--crop-size", "32", "--epochs", "2", "--batch-size", "4", "--workers", "0",
                          "--no-progress", "--no-cache", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(record))
    assert written["protocol"] == "linear" and written["settings"]["mode"] == "full"
    assert written["settings"]["lr"] == 10.0 and "RandomResizedCrop" in written["settings"]["train_transform"]
    assert 0 <= written["metrics"]["top1"] <= 100 and written["data"]["num_classes"] == 3
    assert written["checkpoint"]["arch"] == "convnet4" and len(written["checkpoint"]["sha256"]) == 64


def test_features_mode_on_cifar_arrays_reuses_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFND_CACHE", str(tmp_path / "decoded"))
    root = tmp_path / "cifar"
    fixtures.make_imagenet_folders(root, wnids=("airplane", "automobile"), train_per_class=6, val_per_class=3)
    (root / "val").rename(root / "test")
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt", "convnet4")
    argv = ["--checkpoint", str(path), "--dataset", "cifar10", "--data-root", str(root), "--epochs", "20",
            "--workers", "0", "--no-progress", "--cache-dir", str(tmp_path / "features"), "--arch", "convnet4",
            "--out", str(tmp_path / "probe.json")]
    first = linear.main(argv)
    second = linear.main(argv)
    assert first["settings"]["mode"] == "features" and first["data"]["val_split"] == "test"
    assert first["settings"]["features_reused_from_cache"] == [False, False]
    assert second["settings"]["features_reused_from_cache"] == [True, True]
    assert second["metrics"]["top1"] == first["metrics"]["top1"]
    assert json.loads((tmp_path / "probe.json").read_text())["metrics"]["num_samples"] == 6


def test_full_mode_on_arrays_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IFND_CACHE", str(tmp_path / "decoded"))
    root = fixtures.make_imagenet_folders(tmp_path / "cifar", wnids=("cat", "dog"), train_per_class=1, val_per_class=1)
    (root / "val").rename(root / "test")
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit):
        linear.main(["--checkpoint", str(path), "--dataset", "cifar10", "--data-root", str(root), "--mode", "full",
                     "--workers", "0", "--no-cache", "--out", str(tmp_path / "r.json")])
    assert "for CIFAR arrays use --mode features" in capsys.readouterr().err


def test_missing_dataset_root_is_reported(tmp_path, capsys):
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(SystemExit) as exit_info:
        linear.main(["--checkpoint", str(path), "--data-root", str(tmp_path / "imagenet"), "--no-cache",
                     "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert f"dataset root not found: {tmp_path / 'imagenet'} does not exist" in capsys.readouterr().err


def test_wordnet_depth_relabels_imagenet_folders(tmp_path):
    import argparse

    from conftest import write_image_folder
    from eval.cli import classification_dataset
    from wordnet_hierarchy import relabel

    wnids = ["n01440764", "n01443537", "n02085620", "n02123045"]  # tench, goldfish, Chihuahua, tabby
    root = write_image_folder(tmp_path / "imagenet", classes=wnids, per_class=2, size=8, splits=("train",))
    args = argparse.Namespace(dataset="imagefolder", data_root=str(root), resize_size=8, crop_size=8,
                              wordnet_depth=9)
    dataset = classification_dataset(args, "train")
    expected, names = relabel(wnids, 9)
    assert dataset.classes == names and len(names) < len(wnids)
    assert [label for _, label in dataset.samples] == [expected[i] for i in range(4) for _ in range(2)]


def test_cli_probe_matches_the_harness_protocol(tmp_path, monkeypatch, capsys):
    """``--epochs E --train-subset N`` on CIFAR is the tables' probe: the same images, classifier and number."""
    from eval.features import CheckpointFeatures
    from eval.data import cifar_split

    monkeypatch.setenv("IFND_CACHE", str(tmp_path / "decoded"))
    root = fixtures.make_imagenet_folders(tmp_path / "cifar", wnids=("cat", "dog", "ship"), train_per_class=6,
                                          val_per_class=3)
    (root / "val").rename(root / "test")
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt", "convnet4")
    record = linear.main(["--checkpoint", str(path), "--dataset", "cifar10", "--data-root", str(root), "--epochs", "7",
                          "--train-subset", "9", "--workers", "0", "--no-cache", "--out", str(tmp_path / "p.json")])
    source = CheckpointFeatures(path, device="cpu", progress=False)
    train, test = source(cifar_split("cifar10", "train", root, 9)), source(cifar_split("cifar10", "test", root))
    harness = linear.linear_probe_features(train.features, train.labels, test.features, test.labels, epochs=7,
                                           lr=0.1, batch_size=256, num_classes=3)
    assert record["data"]["num_train"] == 9 and sorted(np.bincount(train.labels)) == [3, 3, 3]
    assert record["metrics"]["top1"] == harness["top1"]
    log = capsys.readouterr().err  # stderr is not a terminal here: plain lines, no bars
    assert "features of cifar10-train-subset9-seed0: 9 images" in log and "probe epoch 7/7  loss " in log
