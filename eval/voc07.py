"""VOC2007 classification with per-class linear SVMs on frozen features (Table 1, "VOC" column).

The paper follows PCL, whose ``eval_svm_voc.py`` trains scikit-learn ``LinearSVC``s on frozen
ResNet-50 features of centre crops. We implement the cross-validated form of that protocol used by
VISSL's ``SVMTrainer`` (Goyal et al., 2019, "Scaling and benchmarking self-supervised visual
representation learning"; the setting PIRL reports), so the cost is never chosen on the test set:

1. features: the backbone's pooled output for Resize(256) + CenterCrop(224) views of VOC2007
   ``trainval`` and ``test`` (cached by :mod:`eval.features`), each row divided by its L2 norm + 1e-5;
2. per class, targets +1 for label 1 and -1 for labels -1 and 0 (difficult images count as
   negatives in training, as in VISSL and PCL);
3. ``LinearSVC(C, class_weight={1: 2, -1: 1}, penalty="l2", loss="squared_hinge", dual=True,
   tol=1e-4, max_iter=2000)`` for every C in the benchmark's list 1e-7 ... 100 (ten powers of ten,
   ``fair_self_supervision_benchmark/scripts/train_svm.sh``); the C with the highest mean 3-fold
   cross-validated AP on ``trainval`` (sklearn ``cross_val_score``, stratified folds) is refit on all
   of ``trainval`` (fewer folds only when a class has fewer than 3 positives, i.e. in tiny fixtures);
4. on ``test``, images marked difficult (0) for the class are ignored; AP is the VOC all-point
   interpolated average precision (area under the monotone precision envelope: the VOC2010+
   devkit's and VISSL's ``calculate_ap``); the reported number is the mean over the 20 classes (%).

:func:`average_precision` also gives the non-interpolated AP (``interpolation="none"``, equal to
scikit-learn's ``average_precision_score``) and the VOC2007 devkit's 11-point AP, reported beside
the main number. Tied scores are grouped (one precision/recall point per distinct score).

    python -m eval.voc07 --checkpoint CKPT --voc-root /data/VOCdevkit --out voc07.json
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning, UndefinedMetricWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import LinearSVC

from eval import cli
from eval.options import HelpFormatter
from eval.data import VOC_CLASSES, center_crop_transform, voc2007
from eval.results import result_record, write_result

SVM_COSTS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
CV_FOLDS = 3
INTERPOLATIONS = ("voc_all_point", "none", "voc07_11point")


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """VISSL's ``_normalize_features``: each row divided by (its L2 norm + 1e-5)."""
    features = np.asarray(features, dtype=np.float64)
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-5)


def average_precision(positive, scores, interpolation: str = "voc_all_point") -> float:
    """AP in [0, 1] of ``scores`` for binary ``positive`` (one point per distinct score).

    ``voc_all_point``: area under the monotone (right-to-left running max) precision envelope;
    ``none``: sum over thresholds of (recall step) x precision, i.e. sklearn's average_precision_score;
    ``voc07_11point``: mean over recall levels 0, 0.1, ..., 1 of the best precision at that recall or more.
    """
    positive = np.asarray(positive).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if positive.shape != scores.shape:
        raise ValueError(f"{positive.shape[0]} labels but {scores.shape[0]} scores")
    if not positive.any():
        raise ValueError("average precision is undefined without positive samples")
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked) != 0), ranked.size - 1]
    true_pos = np.cumsum(positive[order])[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    recall = true_pos / positive.sum()
    if interpolation == "none":
        return float(np.sum(np.diff(recall, prepend=0.0) * precision))
    if interpolation == "voc_all_point":
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        return float(np.sum(np.diff(recall, prepend=0.0) * envelope))
    if interpolation == "voc07_11point":
        return float(np.mean([precision[recall >= t].max(initial=0.0) for t in np.linspace(0, 1, 11)]))
    raise ValueError(f"unknown interpolation {interpolation!r}: choose one of {', '.join(INTERPOLATIONS)}")


def _svm(cost: float) -> LinearSVC:
    return LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, penalty="l2",
                     loss="squared_hinge", tol=1e-4, dual=True, max_iter=2000, random_state=0)


def train_class_svm(features: np.ndarray, targets: np.ndarray, costs=SVM_COSTS, folds: int = CV_FOLDS):
    """Cross-validate every cost on (features, +1/-1 targets), refit the best; returns (svm, cost, cv APs)."""
    if not (targets == 1).any() or (targets == 1).all():
        raise cli.UsageError("a class has no positive (or no negative) training image: every VOC class needs "
                             "both in trainval")
    with warnings.catch_warnings():
        for category in (ConvergenceWarning, FitFailedWarning, UndefinedMetricWarning, UserWarning, RuntimeWarning):
            warnings.simplefilter("ignore", category)
        splitter = StratifiedKFold(n_splits=min(folds, int((targets == 1).sum()), int((targets != 1).sum())))
        cv_ap = [float(np.nanmean(cross_val_score(_svm(c), features, targets, cv=splitter,
                                                  scoring="average_precision")))
                 if splitter.n_splits >= 2 else float("nan") for c in costs]
        ranked = np.nan_to_num(np.asarray(cv_ap), nan=-np.inf)
        best = costs[int(np.argmax(ranked))]
        return _svm(best).fit(features, targets), best, cv_ap


def voc07_svm(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
              test_labels: np.ndarray, costs=SVM_COSTS, folds: int = CV_FOLDS, jobs: int = 1,
              class_names=VOC_CLASSES) -> dict:
    """The whole protocol on features and ``[N, classes]`` 1/-1/0 label matrices; APs in %."""
    train_x, test_x = l2_normalise(train_features), l2_normalise(test_features)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)

    def one_class(c: int):
        svm, cost, cv_ap = train_class_svm(train_x, np.where(train_labels[:, c] == 1, 1, -1), costs, folds)
        keep = test_labels[:, c] != 0  # difficult images do not count at test time
        scores = svm.decision_function(test_x[keep])
        return cost, cv_ap, {kind: 100.0 * average_precision(test_labels[keep, c] == 1, scores, kind)
                             for kind in INTERPOLATIONS}

    per_class = Parallel(n_jobs=jobs)(delayed(one_class)(c) for c in range(train_labels.shape[1]))
    ap = {kind: [result[2][kind] for result in per_class] for kind in INTERPOLATIONS}
    return {
        "mAP": float(np.mean(ap["voc_all_point"])),
        "ap_per_class": dict(zip(class_names, ap["voc_all_point"])),
        "mAP_by_interpolation": {kind: float(np.mean(values)) for kind, values in ap.items()},
        "chosen_cost": dict(zip(class_names, [result[0] for result in per_class])),
        "cross_validation_ap": {name: dict(zip(map(str, costs), result[1]))
                                for name, result in zip(class_names, per_class)},
    }


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.voc07", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_runtime_args(parser)
    group = parser.add_argument_group("VOC2007 SVMs")
    group.add_argument("--data-root", "--voc-root", dest="voc_root", metavar="DIR",
                       required=True, help="VOCdevkit (or its parent, or VOCdevkit/VOC2007)")
    group.add_argument("--train-split", default="trainval")
    group.add_argument("--test-split", default="test")
    group.add_argument("--costs", type=float, nargs="+", default=list(SVM_COSTS))
    group.add_argument("--folds", type=int, default=CV_FOLDS)
    group.add_argument("--jobs", type=int, default=1, help="classes trained in parallel (joblib)")
    group.add_argument("--resize-size", type=int, default=256)
    group.add_argument("--crop-size", type=int, default=224)
    return parser


def main_voc07(args: argparse.Namespace) -> dict:
    started = time.time()
    view = center_crop_transform(args.resize_size, args.crop_size)
    train = voc2007(args.voc_root, args.train_split, view)
    test = voc2007(args.voc_root, args.test_split, view)
    source = cli.feature_source(args)
    train_features, test_features = source(train), source(test)
    metrics = voc07_svm(train_features.features, train_features.labels, test_features.features,
                        test_features.labels, tuple(args.costs), args.folds, args.jobs)
    data = {"voc_root": args.voc_root, "train_split": args.train_split, "test_split": args.test_split,
            "num_train": len(train), "num_test": len(test)}
    settings = {"costs": list(args.costs), "folds": args.folds, "class_weight": {"1": 2, "-1": 1},
                "feature_normalisation": "l2 (norm + 1e-5)", "ap": "voc_all_point", "view": repr(view),
                "features_reused_from_cache": [train_features.reused, test_features.reused]}
    record = result_record("voc07_svm", "Table 1 (VOC)", source.info, data, settings, metrics, time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_voc07, _build_parser(), argv)


if __name__ == "__main__":
    main()
