"""VOC07 per-class SVMs: AP definitions against scikit-learn and VISSL's formula, the whole CLI."""
import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from eval import fixtures, voc07


@pytest.mark.parametrize("seed", range(5))
def test_noninterpolated_ap_equals_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(200) < 0.3
    scores = np.round(rng.normal(size=200) + positive, 1)  # rounding creates many ties
    assert voc07.average_precision(positive, scores, "none") == pytest.approx(
        average_precision_score(positive, scores), abs=1e-12)


def _vissl_calculate_ap(positive, scores):
    """VISSL's get_precision_recall + calculate_ap, transcribed loop by loop (valid without ties)."""
    order = np.argsort(-scores)
    tp = positive[order].astype(float)
    precision = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    recall = np.cumsum(tp) / tp.sum()
    mrec, mpre = np.r_[0, recall, 1], np.r_[0, precision, 0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in np.flatnonzero(mrec[1:] != mrec[:-1]) + 1)


@pytest.mark.parametrize("seed", range(5))
def test_voc_all_point_ap_is_vissls_and_bounds_the_plain_ap(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(150) < 0.25
    scores = rng.normal(size=150) + positive
    all_point = voc07.average_precision(positive, scores, "voc_all_point")
    assert all_point == pytest.approx(_vissl_calculate_ap(positive, scores), abs=1e-12)
    assert all_point >= voc07.average_precision(positive, scores, "none")


def test_ap_by_hand():
    positive, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])  # P at hits: 1, 2/3
    assert voc07.average_precision(positive, scores, "none") == pytest.approx((1 + 2 / 3) / 2)
    assert voc07.average_precision(positive, scores, "voc_all_point") == pytest.approx((1 + 2 / 3) / 2)
    # recall 0, .1, .., .5 -> best precision 1; recall .6, .., 1 -> 2/3
    assert voc07.average_precision(positive, scores, "voc07_11point") == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert voc07.average_precision([0, 1], [0.1, 0.9], "voc_all_point") == 1.0


def test_svms_separate_separable_features_and_ignore_difficult_test_images():
    rng = np.random.default_rng(0)
    classes = 3
    train_labels = np.where(rng.random((60, classes)) < 0.4, 1, -1)
    test_labels = np.where(rng.random((30, classes)) < 0.4, 1, -1)
    train_labels[:, 0] = np.where(np.arange(60) % 3 == 0, 1, -1)
    test_labels[:, 0] = np.where(np.arange(30) % 3 == 0, 1, -1)
    features = lambda labels: np.hstack([labels * 5.0, rng.normal(size=(len(labels), 4))])
    train_x, test_x = features(train_labels), features(test_labels)
    test_labels[0, 0] = 0  # a difficult positive: ignored, so it cannot lower the AP
    train_labels[1, 1] = 0  # difficult in training counts as a negative
    result = voc07.voc07_svm(train_x, train_labels, test_x, test_labels, costs=(0.01, 1.0), class_names="abc")
    assert result["mAP"] == pytest.approx(100.0)
    assert set(result["chosen_cost"]) == {"a", "b", "c"} and set(result["chosen_cost"].values()) <= {0.01, 1.0}
    assert list(result["cross_validation_ap"]["a"]) == ["0.01", "1.0"]


def test_cli_on_a_vocdevkit(tmp_path):
    devkit = fixtures.make_vocdevkit(tmp_path / "voc")
    path = fixtures.save_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "voc07.json"
    voc07.main(["--checkpoint", str(path), "--voc-root", str(devkit), "--resize-size", "36", "--crop-size", "32",
                "--costs", "0.1", "1", "--workers", "0", "--no-progress", "--cache-dir", str(tmp_path / "c"),
                "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["protocol"] == "voc07_svm" and (written["data"]["num_train"], written["data"]["num_test"]) == (20, 15)
    assert len(written["metrics"]["ap_per_class"]) == 20 and 0 <= written["metrics"]["mAP"] <= 100
    assert written["metrics"]["mAP"] == pytest.approx(np.mean(list(written["metrics"]["ap_per_class"].values())))
    assert written["settings"]["ap"] == "voc_all_point"


def test_missing_voc_root_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit):
        voc07.main(["--checkpoint", str(fixtures.save_checkpoint(tmp_path / "c.pt")), "--voc-root",
                    str(tmp_path / "VOCdevkit"), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert f"VOC2007 root not found: {tmp_path / 'VOCdevkit'} does not exist" in err and "JPEGImages" in err
