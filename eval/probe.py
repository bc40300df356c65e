"""Probe of a checkpoint's frozen features on CIFAR, at any label granularity (Tables 5-8 on CIFAR).

Two separate steps, as in every frozen protocol here:

1. features: the pooled backbone features of the training and the test split (each optionally a
   class-balanced subset drawn with seed 0, :func:`eval.data.cifar_split`), extracted once per
   checkpoint and split and cached on disk (:class:`eval.features.CheckpointFeatures`), so the
   probes of one checkpoint at every WordNet depth extract once;
2. probe (:func:`probe_features`): the labels of both splits mapped by ``label_map`` (original
   class -> new label, e.g. its WordNet ancestor; :func:`eval.data.map_labels`), then

   * ``linear``: a linear classifier on the features (:func:`eval.linear.linear_probe_features`;
     ``settings`` are its keyword arguments: epochs, lr, batch_size, ...), top-1 and top-5 in %;
   * ``knn``: the weighted kNN classifier (``settings["k"]`` neighbours, default 200, temperature
     0.1; :func:`ifnd.metrics.knn_accuracy`), top-1 in %, the training split as its memory bank.

    python -m eval.probe --checkpoint run/checkpoints/last.pt --dataset cifar10 --protocol knn --k 200 \
        --train-subset 12000 --out knn.json
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

import numpy as np
import torch

from eval import cli
from eval.data import cifar_split, map_labels
from eval.features import CheckpointFeatures, FeatureSet
from eval.linear import FAST_LR
from eval.results import result_record, write_result

PROBE_PROTOCOLS = ("linear", "knn")
KNN_K = 200


def probe_features(train: FeatureSet, test: FeatureSet, protocol: str, settings: dict | None = None,
                   label_map: Sequence[int] | None = None) -> dict:
    """Step 2: the probe on extracted features; ``{"protocol", "num_classes", "num_train", "num_test", "top1"[, "top5"]}``."""
    settings = dict(settings or {})
    train_y, test_y = map_labels(train.labels, label_map), map_labels(test.labels, label_map)
    out = {"protocol": protocol, "num_classes": int(len(np.unique(train_y))), "num_train": int(len(train_y)),
           "num_test": int(len(test_y))}
    if protocol == "linear":
        from eval.linear import linear_probe_features

        num_classes = int(max(train_y.max(), test_y.max())) + 1
        metrics = linear_probe_features(train.features, train_y, test.features, test_y, num_classes=num_classes,
                                        **settings)
        out.update(top1=float(metrics["top1"]), top5=float(metrics["top5"]))
    elif protocol == "knn":
        from ifnd.metrics import knn_accuracy

        out["top1"] = knn_accuracy(torch.as_tensor(train.features), torch.as_tensor(train_y),
                                   torch.as_tensor(test.features), torch.as_tensor(test_y),
                                   k=int(settings.get("k", KNN_K)))
    else:
        raise cli.UsageError(f"unknown probe protocol {protocol!r}: use one of {', '.join(PROBE_PROTOCOLS)}")
    return out


def cifar_probe(source: CheckpointFeatures, dataset: str, protocol: str, settings: dict | None = None,
                label_map: Sequence[int] | None = None, data_root=None, train_subset: int = 0,
                test_subset: int = 0) -> dict:
    """Both steps on a CIFAR dataset: cached features of its splits, then :func:`probe_features`."""
    if protocol not in PROBE_PROTOCOLS:
        raise cli.UsageError(f"unknown probe protocol {protocol!r}: use one of {', '.join(PROBE_PROTOCOLS)}")
    train = source(cifar_split(dataset, "train", data_root, train_subset))
    test = source(cifar_split(dataset, "test", data_root, test_subset))
    return probe_features(train, test, protocol, settings, label_map)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.probe", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_runtime_args(parser)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=("cifar10", "cifar100"), default="cifar10")
    group.add_argument("--data-root", default=None, help="dataset root (default as the trainer's)")
    group.add_argument("--train-subset", type=int, default=0, help="class-balanced training images (0: all)")
    group.add_argument("--test-subset", type=int, default=0, help="class-balanced test images (0: all)")
    group.add_argument("--label-map", type=int, nargs="+", default=None, metavar="LABEL",
                       help="the new label of each original class, in class order (default: the classes)")
    group = parser.add_argument_group("probe")
    group.add_argument("--protocol", choices=PROBE_PROTOCOLS, default="linear")
    group.add_argument("--k", type=int, default=KNN_K, help="knn: neighbours")
    group.add_argument("--epochs", type=int, default=100, help="linear: epochs")
    group.add_argument("--lr", type=float, default=FAST_LR, help="linear: learning rate (standardised features)")
    group.add_argument("--batch-size", type=int, default=256, help="linear: batch size")
    return parser


def main_probe(args: argparse.Namespace) -> dict:
    started = time.time()
    settings = ({"k": args.k} if args.protocol == "knn" else
                {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                 "device": args.device})
    if min(args.train_subset, args.test_subset) < 0:
        raise cli.UsageError("--train-subset and --test-subset count images: give 0 (all) or more")
    classes = cifar_split(args.dataset, "test", args.data_root).classes
    if args.label_map is not None and len(args.label_map) != len(classes):
        raise cli.UsageError(f"--label-map gives {len(args.label_map)} labels but {args.dataset} has "
                             f"{len(classes)} classes: give one new label per class, in class order")
    source = cli.feature_source(args)
    metrics = cifar_probe(source, args.dataset, args.protocol, settings, args.label_map, args.data_root,
                          args.train_subset, args.test_subset)
    data = {"dataset": args.dataset, "root": args.data_root, "train_subset": args.train_subset,
            "test_subset": args.test_subset, "label_map": args.label_map}
    record = result_record("probe", "Tables 5-8 (CIFAR probe)", source.info, data,
                           {k: v for k, v in settings.items() if k != "device"}, metrics, time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_probe, _build_parser(), argv)


if __name__ == "__main__":
    main()
