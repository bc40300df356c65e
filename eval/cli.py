"""Command-line pieces shared by every ``python -m eval.<protocol>``: arguments, datasets, errors.

Known failures (missing data, unusable checkpoint, bad option) end the command with exit status 2
and one ``error: ...`` line on stderr that says what is wrong and how to fix it; no traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from eval.checkpoints import CheckpointError
from eval.data import DatasetNotFoundError, ImageListDataset, center_crop_transform, cifar_arrays, image_folder
from eval.features import CheckpointFeatures, default_cache_dir
from eval.options import DEFAULT_WORKERS, add_out_arg, add_progress_arg
from ifnd.falseneg.kmeans import ClusteringError

CLASSIFICATION_DATASETS = ("imagefolder", "cifar10", "cifar100")


class UsageError(ValueError):
    """Options that do not fit together, with the combination that works."""


def add_checkpoint_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("checkpoint")
    group.add_argument("--checkpoint", required=True, help="our trainer's checkpoint, an official MoCo/PCL "
                       "checkpoint, or a torchvision state dict")
    group.add_argument("--arch", choices=("resnet50", "resnet18", "convnet4"), default=None,
                       help="expected backbone (default: read from the weights; a mismatch is an error)")
    stem = group.add_mutually_exclusive_group()
    stem.add_argument("--cifar-stem", dest="cifar_stem", action="store_true", default=None,
                      help="expect the 3x3 CIFAR stem")
    stem.add_argument("--imagenet-stem", dest="cifar_stem", action="store_false",
                      help="expect the 7x7 ImageNet stem")
    group.add_argument("--trust-checkpoint", action="store_true",
                       help="allow arbitrary pickled objects in the checkpoint (only for files you trust)")


def add_runtime_args(parser: argparse.ArgumentParser, feature_cache: bool = True) -> None:
    """--out, --device, --workers, --seed, --progress; with ``feature_cache`` also the cache options."""
    group = parser.add_argument_group("running")
    add_out_arg(group)
    group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    group.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                       help="data-loading processes (0: in the main process; default: min(4, cores - 1), "
                            f"here {DEFAULT_WORKERS})")
    group.add_argument("--seed", type=int, default=0,
                       help="random seed of the protocol (classifier initialisation, data order)")
    add_progress_arg(group)
    if feature_cache:
        group.add_argument("--feature-batch-size", type=int, default=256, help="batch size of feature extraction")
        group.add_argument("--cache-dir", default=None,
                           help="feature cache (default: $IFND_FEATURE_CACHE or ~/.cache/ifnd/features)")
        group.add_argument("--no-cache", action="store_true", help="extract features without reading or writing "
                           "the cache")


def add_classification_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=CLASSIFICATION_DATASETS, default="imagefolder",
                       help="imagefolder: ImageNet-style <root>/<split>/<class>/<image>; cifar10/cifar100: the "
                            "trainer's decoded CIFAR (32x32, no resize)")
    group.add_argument("--data-root", default=None, metavar="DIR",
                       help="dataset root (CIFAR: as the trainer's, default $IFND_DATA_ROOT or "
                            "../shared/data/cifar10-jpeg.tar.gz)")
    group.add_argument("--train-split", default="train", help="split the classifier is trained on")
    group.add_argument("--train-subset", type=int, default=0, metavar="N",
                       help="train on a class-balanced subset of N images (the harness's selection; the mini "
                            "tables use 12000); 0: the whole split (default)")
    group.add_argument("--val-split", default=None, help="default: val (imagefolder) or test (CIFAR)")
    group.add_argument("--resize-size", type=int, default=256, help="imagefolder evaluation resize")
    group.add_argument("--crop-size", type=int, default=224, help="imagefolder crop (CenterCrop / RandomResizedCrop)")
    group.add_argument("--wordnet-depth", type=int, default=None,
                       help="imagefolder of ImageNet wnids: relabel the classes by their WordNet ancestor at this "
                            "depth (Table 5: 3, 5, 7, 9; 18 = the original 1000 classes)")


def val_split(args: argparse.Namespace) -> str:
    return args.val_split or ("val" if args.dataset == "imagefolder" else "test")


def classification_dataset(args: argparse.Namespace, split: str):
    """The evaluation view of one split: centre crop for image folders, bare tensors for CIFAR."""
    if args.dataset == "imagefolder":
        if args.data_root is None:
            raise UsageError("--data-root is required for --dataset imagefolder: give the folder that holds "
                             "train/ and val/ (ImageNet layout)")
        dataset = image_folder(args.data_root, split, center_crop_transform(args.resize_size, args.crop_size))
        depth = getattr(args, "wordnet_depth", None)  # only the classification protocols offer it
        return relabel_by_wordnet_depth(dataset, depth) if depth else dataset
    if getattr(args, "wordnet_depth", None):
        raise UsageError("--wordnet-depth relabels ImageNet wnid folders: use it with --dataset imagefolder")
    return cifar_arrays(args.dataset, split, args.data_root)


def relabel_by_wordnet_depth(dataset: ImageListDataset, depth: int) -> ImageListDataset:
    """The same images, each labelled by its class's WordNet ancestor at ``depth`` (Table 5, App. D)."""
    from wordnet_hierarchy import relabel

    try:
        new_label, names = relabel(dataset.classes, depth)
    except ValueError as err:
        raise UsageError(f"{err} (--wordnet-depth needs ImageNet wnid class folders)") from err
    samples = [(path, new_label[label]) for path, label in dataset.samples]
    return ImageListDataset(samples, names, dataset.transform, f"{dataset.name}|wordnet-depth={depth}",
                            dataset.layout)


def feature_source(args: argparse.Namespace) -> CheckpointFeatures:
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return CheckpointFeatures(args.checkpoint, args.arch, args.cifar_stem, args.trust_checkpoint, cache,
                              args.feature_batch_size, args.workers, args.device, args.progress)


def run(main: Callable[[argparse.Namespace], dict], parser: argparse.ArgumentParser, argv=None) -> dict:
    """Parse, run ``main(args)`` (which writes the result), turn known errors into one clear line."""
    args = parser.parse_args(argv)
    started = time.time()
    try:
        record = main(args)
    except (CheckpointError, DatasetNotFoundError, UsageError, ClusteringError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    headline = {k: round(v, 2) for k, v in record["metrics"].items() if isinstance(v, float)}
    print(f"{parser.prog}: wrote {args.out} in {time.time() - started:.1f}s: {headline}", file=sys.stderr)
    return record
