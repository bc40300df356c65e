"""Clustering quality of a checkpoint's representation: k-means NMI (Table 4) and MTPR / MTNR (Table 6).

* NMI (Table 4): k-means on the L2-normalised frozen backbone features (shared cache of
  :mod:`eval.features`) with k = the number of classes, run with 5 seeds; the normalised mutual
  information with the true classes (Strehl & Ghosh, 2002: geometric-mean normalisation) is
  reported as mean and standard deviation in %. This is :func:`ifnd.metrics.kmeans_nmi`
  (faiss k-means when installed, as in the paper, else the torch backend). On CIFAR the harness
  calls :func:`cifar_nmi`: cached features of a split (optionally a class-balanced subset, labels
  optionally mapped to coarser classes), then :func:`clustering_nmi`.
* MTPR / MTNR (Sec. 4.4, Table 6) of a pseudo labelling against the true labels of the same
  samples, via :func:`ifnd.metrics.mtpr_mtnr`. The labelling is either read from a file
  (``--pseudo-labels``: ``.npy``, ``.npz`` (array ``labels`` or its only array), ``.json``,
  ``.txt`` (whitespace-separated integers), or our trainer's checkpoint, whose detector state holds
  one row of labels per clustering level over the run's training samples in order; a
  ``train_subset`` recorded in that checkpoint's config is applied to the true labels) or computed
  by k-means on the features at each ``--kmeans-k``. A 2-D array is one labelling per row.

    python -m eval.clustering --checkpoint CKPT --data-root /imagenet --split train --out nmi.json
    python -m eval.clustering --checkpoint run/checkpoints/last.pt --dataset cifar10 \
        --pseudo-labels run/checkpoints/last.pt --kmeans-k 10 30 100 --out mtpr.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from eval import cli
from eval.options import HelpFormatter
from eval.checkpoints import read_checkpoint
from eval.data import cifar_split, map_labels
from eval.features import CheckpointFeatures
from eval.results import result_record, write_result
from ifnd.data import training_indices
from ifnd.falseneg.kmeans import kmeans
from ifnd.metrics import kmeans_nmi, mtpr_mtnr

NMI_SEEDS = 5  # Table 4: "We run k-means five times and report the average score with the standard deviation"


def clustering_nmi(features: np.ndarray, labels: np.ndarray, k: int | None = None, seeds: int = NMI_SEEDS,
                   backend: str = "auto") -> dict[str, float]:
    """k-means NMI (%) over ``seeds`` runs; ``k`` defaults to the number of distinct labels."""
    k = k or len(np.unique(labels))
    mean, std = kmeans_nmi(torch.as_tensor(np.asarray(features), dtype=torch.float32), np.asarray(labels), k, seeds,
                           backend)
    return {"nmi_mean": mean, "nmi_std": std, "k": k, "seeds": seeds}


def cifar_nmi(source: CheckpointFeatures, dataset: str, split: str = "test", subset: int = 0, k: int | None = None,
              seeds: int = NMI_SEEDS, label_map=None, data_root=None) -> dict:
    """:func:`clustering_nmi` of a checkpoint's cached features of a CIFAR split (``subset``: class-balanced, seed 0)."""
    features = source(cifar_split(dataset, split, data_root, subset))
    result = clustering_nmi(features.features, map_labels(features.labels, label_map), k, seeds)
    return {key: (float(v) if isinstance(v, (float, np.floating)) else v) for key, v in result.items()}


def read_pseudo_labels(path: str | Path, trusted: bool = False) -> tuple[np.ndarray, dict | None]:
    """Labellings ``[levels, N]`` from a file, and our trainer's config when the file is its checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise cli.UsageError(f"pseudo-label file {path} does not exist: give a .npy/.npz/.json/.txt file or a "
                             "trainer checkpoint (run_dir/checkpoints/last.pt)")
    config = None
    suffix = path.suffix.lower()
    if suffix == ".npy":
        labels = np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if "labels" not in npz and len(npz.files) != 1:
                raise cli.UsageError(f"{path} holds arrays {npz.files}: name the pseudo labels 'labels'")
            labels = npz["labels" if "labels" in npz else npz.files[0]]
    elif suffix == ".json":
        data = json.loads(path.read_text())
        labels = np.asarray(data["labels"] if isinstance(data, dict) else data)
    elif suffix == ".txt":
        labels = np.asarray(path.read_text().split(), dtype=np.int64)
    else:
        raw = read_checkpoint(path, trusted)
        detector = raw.get("detector") if isinstance(raw.get("detector"), dict) else {}
        found = detector.get("labels", raw.get("labels"))
        if found is None:
            raise cli.UsageError(f"{path} holds no pseudo labels (no 'detector' -> 'labels' and no 'labels' entry): "
                                 "was the run trained with a clustering detector (--mode ifnd)?")
        labels, config = torch.as_tensor(found).numpy(), raw.get("config")
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2) or not np.issubdtype(labels.dtype, np.integer):
        raise cli.UsageError(f"{path} holds a {labels.dtype} array of shape {labels.shape}: expected integer "
                             "labels [N] or [levels, N]")
    return labels.reshape(1, -1) if labels.ndim == 1 else labels, config


def _true_labels_for_run(true_labels: np.ndarray, config: dict | None) -> np.ndarray:
    """The true labels of the samples our trainer trained on (its ``train_subset`` and ``seed``), in its order."""
    if not config:
        return true_labels
    indices = training_indices(torch.as_tensor(true_labels), int(config.get("train_subset") or 0),
                               int(config.get("seed", 0)))
    return true_labels[indices.numpy()]


def pseudo_label_rates(pseudo: np.ndarray, true_labels: np.ndarray, names: list[str]) -> list[dict]:
    """MTPR / MTNR (%) of every labelling row against ``true_labels``."""
    if pseudo.shape[1] != true_labels.shape[0]:
        raise cli.UsageError(f"{pseudo.shape[1]} pseudo labels but {true_labels.shape[0]} samples in the dataset: "
                             "use the split (and order) the labels were computed on, e.g. --split train")
    rows = []
    for name, level in zip(names, pseudo):
        mtpr, mtnr = mtpr_mtnr(level, true_labels)
        rows.append({"source": name, "mtpr": mtpr, "mtnr": mtnr, "num_clusters": int(len(np.unique(level)))})
    return rows


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.clustering", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_runtime_args(parser)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=cli.CLASSIFICATION_DATASETS, default="imagefolder",
                       help="imagefolder: <root>/<split>/<class>/<image>; cifar10/cifar100: the trainer's arrays")
    group.add_argument("--data-root", default=None, metavar="DIR",
                       help="dataset root (CIFAR: as the trainer's, default $IFND_DATA_ROOT)")
    group.add_argument("--split", default="train", help="split whose features are clustered")
    group.add_argument("--resize-size", type=int, default=256, help="imagefolder evaluation resize")
    group.add_argument("--crop-size", type=int, default=224, help="imagefolder centre crop")
    group = parser.add_argument_group("clustering")
    group.add_argument("--k", type=int, default=None, help="NMI clusters (default: the number of classes)")
    group.add_argument("--seeds", type=int, default=NMI_SEEDS, metavar="N",
                       help="number of k-means runs (seeds 0..N-1) the NMI is averaged over")
    group.add_argument("--nmi", action=argparse.BooleanOptionalAction, default=True,
                       help="the NMI (Table 4) part (default: on)")
    group.add_argument("--kmeans-k", type=int, nargs="*", default=[], help="MTPR/MTNR of k-means at these k")
    group.add_argument("--pseudo-labels", default=None, help="MTPR/MTNR of the labels in this file")
    group.add_argument("--kmeans-backend", choices=("auto", "faiss", "torch"), default="auto",
                       help="k-means implementation (auto: faiss when installed)")
    return parser


def main_clustering(args: argparse.Namespace) -> dict:
    started = time.time()
    if not (args.nmi or args.kmeans_k or args.pseudo_labels):
        raise cli.UsageError("nothing to compute: drop --no-nmi, or give --kmeans-k / --pseudo-labels")
    dataset = cli.classification_dataset(args, args.split)
    true_labels = np.asarray(dataset.targets)
    source = cli.feature_source(args)
    metrics: dict = {"mtpr_mtnr": []}
    features = source(dataset) if args.nmi or args.kmeans_k else None
    if args.nmi:
        metrics.update(clustering_nmi(features.features, features.labels, args.k or len(dataset.classes) or None,
                                      args.seeds, args.kmeans_backend))
    for k in args.kmeans_k:
        assigned = kmeans(torch.as_tensor(features.features), k, seed=args.seed, backend=args.kmeans_backend)[1]
        metrics["mtpr_mtnr"] += pseudo_label_rates(assigned.numpy().reshape(1, -1), features.labels,
                                                   [f"kmeans k={k} seed={args.seed}"])
    if args.pseudo_labels:
        pseudo, config = read_pseudo_labels(args.pseudo_labels, args.trust_checkpoint)
        ks = (config or {}).get("cluster_numbers") or []
        names = [f"{args.pseudo_labels} level {i}" + (f" (k={ks[i]})" if i < len(ks) else "")
                 for i in range(pseudo.shape[0])]
        metrics["mtpr_mtnr"] += pseudo_label_rates(pseudo, _true_labels_for_run(true_labels, config), names)
    data = {"dataset": args.dataset, "root": args.data_root, "split": args.split, "num_samples": len(dataset),
            "num_classes": len(dataset.classes)}
    settings = {"kmeans_backend": args.kmeans_backend, "features": "L2-normalised pooled backbone features",
                "features_reused_from_cache": features.reused if features is not None else None}
    record = result_record("clustering", "Table 4 (NMI), Table 6 (MTPR/MTNR)", source.info, data, settings, metrics,
                           time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_clustering, _build_parser(), argv)


if __name__ == "__main__":
    main()
