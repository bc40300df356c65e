"""The protocols on a checkpoint written by our own trainer (not a hand-built one)."""
import json

import pytest

from eval import clustering, fixtures, linear
from ifnd.train import main as train_main

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def ifnd_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("trained")
    data = fixtures.make_imagenet_folders(base / "tiny-cifar", CIFAR_CLASSES, train_per_class=12, val_per_class=12)
    (data / "val").rename(data / "test")  # CIFAR's layout: train/ and test/
    run = base / "run"
    assert train_main(["--mode", "ifnd", "--run-dir", str(run), "--data-root", str(data), "--arch", "convnet4",
                       "--epochs", "2", "--batch-size", "40", "--warmup-epochs", "0", "--refresh-every", "1",
                       "--cluster-numbers", "5", "10", "--no-progress", "--knn-k", "10", "--threads", "1"]) == 0
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
