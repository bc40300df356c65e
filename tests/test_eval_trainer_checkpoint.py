"""The protocols on a checkpoint written by our own trainer (not a hand-built one)."""
import json

import numpy as np
import pytest
import torch

from eval import clustering, fixtures, linear, probe, tsne
from eval.checkpoints import CheckpointError, load_backbone, load_framework
from eval.data import cifar_arrays, cifar_split, map_labels
from eval.features import CheckpointFeatures, FeatureSet
from ifnd.data import load_split, stratified_subset, training_indices
from ifnd.metrics import knn_accuracy
from ifnd.rundir import RunDir
from ifnd.train import main as train_main

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_SUBSET, SEED = 100, 3  # the run trains on 100 of the 120 training images, drawn with its seed


@pytest.fixture(scope="module")
def ifnd_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    data = fixtures.make_imagenet_folders(base / "tiny-cifar", CIFAR_CLASSES, train_per_class=12, val_per_class=12)
    (data / "val").rename(data / "test")  # CIFAR's layout: train/ and test/
    run = base / "run"
    assert train_main(["--mode", "ifnd", "--run-dir", str(run), "--data-root", str(data), "--arch", "convnet4",
                       "--epochs", "2", "--batch-size", "40", "--warmup-epochs", "0", "--refresh-every", "1",
                       "--cluster-numbers", "5", "10", "--no-progress", "--knn-k", "10", "--threads", "1",
                       "--train-subset", str(TRAIN_SUBSET), "--seed", str(SEED)]) == 0
    return data, run


def test_mtpr_mtnr_from_the_checkpoint_match_the_trainers_log(ifnd_run, tmp_path):
    data, run = ifnd_run
    record = clustering.main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--dataset", "cifar10",
                              "--data-root", str(data), "--split", "train", "--no-nmi", "--pseudo-labels",
                              str(run / "checkpoints" / "last.pt"), "--workers", "0", "--no-cache",
                              "--out", str(tmp_path / "mtpr.json")])
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last_refresh = [r for r in logged if "mtpr_k5" in r][-1]
    rows = record["metrics"]["mtpr_mtnr"]
    assert [row["source"].endswith(f"(k={k})") for row, k in zip(rows, (5, 10))] == [True, True]
    assert rows[0]["mtpr"] == pytest.approx(last_refresh["mtpr_k5"]) and rows[1]["mtnr"] == pytest.approx(
        last_refresh["mtnr_k10"])
    assert record["checkpoint"]["source_format"] == "ifnd" and record["checkpoint"]["epoch"] == 2


def test_linear_probe_on_the_trained_backbone(ifnd_run, tmp_path):
    data, run = ifnd_run
    record = linear.main(["--checkpoint", str(run / "checkpoints" / "last.pt"), "--dataset", "cifar10",
                          "--data-root", str(data), "--epochs", "10", "--workers", "0", "--no-progress",
                          "--cache-dir", str(tmp_path / "features"), "--out", str(tmp_path / "probe.json")])
    assert record["checkpoint"]["arch"] == "convnet4" and record["data"]["num_val"] == 120
    assert 0 <= record["metrics"]["top1"] <= 100


def test_the_run_directory_holds_what_rundir_names(ifnd_run):
    _, run = ifnd_run
    files = RunDir(run)
    assert all(path.is_file() for path in (files.config, files.metrics, files.checkpoint, files.final))
    assert run / json.loads(files.final.read_text())["checkpoint"] == files.checkpoint
    assert files.checkpoint_at(None) == files.checkpoint
    assert files.checkpoint_at(7) == files.snapshot(7) == run / "checkpoints" / "epoch_0007.pt"


def test_training_indices_are_the_runs_samples():
    labels = torch.arange(30) % 3
    assert torch.equal(training_indices(labels, 0, 5), torch.arange(30))
    assert torch.equal(training_indices(labels, 12, 5), stratified_subset(labels, 12, 5))
    assert torch.bincount(labels[training_indices(labels, 12, 5)]).tolist() == [4, 4, 4]


def test_probe_maps_labels_and_subsets_as_asked(ifnd_run, tmp_path):
    data, run = ifnd_run
    label_map = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    args = ["--checkpoint", str(RunDir(run).checkpoint), "--dataset", "cifar10", "--data-root", str(data),
            "--protocol", "knn", "--k", "5", "--train-subset", "60", "--workers", "0", "--no-progress",
            "--cache-dir", str(tmp_path / "features"), "--out", str(tmp_path / "knn.json"), "--label-map",
            *map(str, label_map)]
    metrics = probe.main(args)["metrics"]
    source = CheckpointFeatures(RunDir(run).checkpoint, cache_dir=None, progress=False)
    train, test = source(cifar_split("cifar10", "train", data, 60)), source(cifar_split("cifar10", "test", data))
    assert np.bincount(train.labels).tolist() == [6] * 10  # class-balanced
    oracle = knn_accuracy(torch.as_tensor(train.features), torch.as_tensor(map_labels(train.labels, label_map)),
                          torch.as_tensor(test.features), torch.as_tensor(map_labels(test.labels, label_map)), k=5)
    assert metrics == {"protocol": "knn", "num_classes": 3, "num_train": 60, "num_test": 120, "top1": oracle}
    with pytest.raises(SystemExit) as stop:
        probe.main(args[:-len(label_map)] + ["0", "1"])
    assert stop.value.code == 2


def test_linear_probe_on_separable_features():
    gen = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    features = np.eye(4)[labels] * 5 + gen.normal(0, 0.1, (100, 4))
    train = FeatureSet(features.astype(np.float32), labels)
    metrics = probe.probe_features(train, train, "linear", {"epochs": 20}, label_map=[0, 1, 1, 0])
    assert metrics["num_classes"] == 2 and metrics["top1"] == 100.0
    with pytest.raises(ValueError, match="label_map has 3 entries"):
        map_labels(labels, [0, 1, 1])
    with pytest.raises(ValueError, match="unknown probe protocol"):
        probe.probe_features(train, train, "svm")


def test_the_rebuilt_model_embeds_as_the_backbone_loader(ifnd_run):
    data, run = ifnd_run
    model, state = load_framework(RunDir(run).checkpoint)
    assert state["epoch"] == 2 and not model.training
    test = cifar_arrays("cifar10", "test", data)
    backbone, _ = load_backbone(RunDir(run).checkpoint)
    with torch.no_grad():
        expected = backbone(torch.stack([test[i][0] for i in range(len(test))])).numpy()
    np.testing.assert_allclose(tsne.embed(model, test.images, "cifar10", "backbone"), expected, atol=1e-4)
    projection = tsne.embed(model, test.images[:8], "cifar10", "projection")
    np.testing.assert_allclose(np.linalg.norm(projection, axis=1), 1.0, rtol=1e-5)


def test_load_framework_refuses_other_checkpoints(tmp_path):
    path = fixtures.save_checkpoint(tmp_path / "moco.pth", "convnet4", layout="moco")
    with pytest.raises(CheckpointError, match="not our trainer's"):
        load_framework(path)


def test_tsne_shows_the_runs_training_samples_with_their_pseudo_labels(ifnd_run, tmp_path):
    data, run = ifnd_run
    record = tsne.main(["--checkpoint", str(RunDir(run).checkpoint), "--data-root", str(data), "--pseudo",
                        "--level", "0", "--space", "projection", "--points", "30", "--perplexity", "5",
                        "--iterations", "250", "--out", str(tmp_path / "tsne.json")])
    metrics = record["metrics"]
    labels = load_split("cifar10", "train", data).labels
    trained_on = labels[training_indices(labels, TRAIN_SUBSET, SEED)].numpy()
    chosen = np.sort(np.random.default_rng(0).choice(TRAIN_SUBSET, 30, replace=False))
    assert metrics["labels"] == trained_on[chosen].tolist() and len(metrics["xy"]) == 30
    pseudo = torch.load(RunDir(run).checkpoint, weights_only=False)["detector"]["labels"][0].numpy()
    assert len(pseudo) == TRAIN_SUBSET and metrics["k"] == 5
    assert metrics["pseudo"] == np.where(pseudo < 5, pseudo, -1)[chosen].tolist()
    assert metrics["accepted_fraction"] == pytest.approx(float((pseudo < 5).mean()))
    assert len(metrics["centroids_xy"]) == len(metrics["centroid_ids"]) == len(np.unique(pseudo[pseudo < 5]))
    assert -1 <= metrics["silhouette"] <= 1 and record["checkpoint"]["epoch"] == 2
