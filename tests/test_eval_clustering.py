"""k-means NMI (Table 4) against scikit-learn, MTPR/MTNR of saved or computed labellings, the CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from eval import clustering, fixtures
from ifnd.falseneg.kmeans import kmeans

REPO = Path(__file__).resolve().parent.parent


def _blobs(seed=0, per_class=30, classes=4, dim=8, spread=0.8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    return (rng.normal(size=(classes, dim)) * 3)[labels] + rng.normal(size=(labels.size, dim)) * spread, labels


def test_nmi_is_sklearns_over_five_seeds():
    features, labels = _blobs(spread=2.5)  # overlapping blobs: seeds disagree, NMI < 100
    result = clustering.clustering_nmi(features, labels, backend="torch")
    scores = [normalized_mutual_info_score(labels, kmeans(torch.as_tensor(features).float(), 4, seed=s,
                                                          backend="torch")[1].numpy(), average_method="geometric")
              for s in range(5)]
    assert (result["k"], result["seeds"]) == (4, 5)
    assert result["nmi_mean"] == pytest.approx(100 * np.mean(scores))
    assert result["nmi_std"] == pytest.approx(100 * np.std(scores))
    assert 0 < result["nmi_mean"] < 100 and result["nmi_std"] > 0


def test_rates_of_extreme_labellings():
    true = np.repeat(np.arange(3), 4)
    rows = clustering.pseudo_label_rates(np.stack([np.arange(12), true, np.zeros(12, int)]), true, ["u", "t", "z"])
    assert [(r["mtpr"], r["mtnr"]) for r in rows] == [(0.0, 100.0), (100.0, 100.0), (100.0, 0.0)]
    with pytest.raises(ValueError, match="11 pseudo labels but 12 samples"):
        clustering.pseudo_label_rates(np.zeros((1, 11), int), true, ["short"])


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".json", ".txt", ".pt"])
def test_pseudo_label_files(tmp_path, suffix):
    labels = np.array([[0, 0, 1, 1, 2], [0, 0, 0, 1, 1]])
    path = tmp_path / f"labels{suffix}"
    if suffix == ".npy":
        np.save(path, labels)
    elif suffix == ".npz":
        np.savez(path, labels=labels)
    elif suffix == ".json":
        path.write_text(json.dumps({"labels": labels.tolist()}))
    elif suffix == ".txt":
        path.write_text(" ".join(map(str, labels[0])))
        labels = labels[:1]
    else:  # our trainer's checkpoint: pseudo labels live in the detector state
        torch.save({"config": {"cluster_numbers": [3, 2], "train_subset": 0}, "model": {},
                    "detector": {"labels": torch.as_tensor(labels), "rate": 0.5}}, path)
    read, config = clustering.read_pseudo_labels(path)
    np.testing.assert_array_equal(read, labels)
    assert (config is not None) == (suffix == ".pt")


def test_cli_end_to_end(tmp_path):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=4, val_per_class=1)
    checkpoint = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    true = np.repeat(np.arange(3), 4)
    np.save(tmp_path / "pseudo.npy", np.stack([true, np.arange(12)]))
    out = tmp_path / "clustering.json"
    command = [sys.executable, "-m", "eval.clustering", "--checkpoint", str(checkpoint), "--data-root", str(root),
               "--split", "train", "--resize-size", "36", "--crop-size", "32", "--kmeans-k", "2",
               "--pseudo-labels", str(tmp_path / "pseudo.npy"), "--workers", "0", "--no-progress",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True, timeout=120)
    metrics = json.loads(out.read_text())["metrics"]
    assert (metrics["k"], metrics["seeds"]) == (3, 5) and 0 <= metrics["nmi_mean"] <= 100
    sources = [row["source"] for row in metrics["mtpr_mtnr"]]
    assert sources[0] == "kmeans k=2 seed=0" and sources[1:] == [f"{tmp_path / 'pseudo.npy'} level {i}" for i in (0, 1)]
    assert [(r["mtpr"], r["mtnr"]) for r in metrics["mtpr_mtnr"][1:]] == [(100.0, 100.0), (0.0, 100.0)]


def test_labels_of_another_split_are_refused(tmp_path, capsys):
    root = fixtures.make_imagenet_folders(tmp_path / "imagenet", train_per_class=2, val_per_class=1)
    np.save(tmp_path / "pseudo.npy", np.zeros(6, dtype=np.int64))
    with pytest.raises(SystemExit):
        clustering.main(["--checkpoint", str(fixtures.save_checkpoint(tmp_path / "c.pt")), "--data-root", str(root),
                         "--split", "val", "--no-nmi", "--pseudo-labels", str(tmp_path / "pseudo.npy"),
                         "--workers", "0", "--no-cache", "--out", str(tmp_path / "r.json")])
    assert "6 pseudo labels but 3 samples in the dataset" in capsys.readouterr().err
