"""Linear evaluation: a frozen backbone and one fully connected layer (Table 1 ImageNet; Tables 5-8).

(a) ``--mode full`` (the default for image folders), the protocol of Appendix C: the classifier "(a fully connected layer followed
by softmax)" is trained on the frozen representations for 100 epochs with SGD, batch 256, initial
learning rate 10, momentum 0.9, weight decay 0, "following the same hyperparameter setting used in
MoCo v2 and PCL". The paper gives no decay schedule; we use MoCo's ``main_lincls.py`` (and PCL's
``eval_cls_imagenet.py``) default ``--schedule 60 80``: the rate is multiplied by 0.1 at epochs 60
and 80. Training images get RandomResizedCrop(224) + horizontal flip, validation images
Resize(256) + CenterCrop(224), both standardised with ImageNet statistics; the backbone stays in
eval mode (frozen BatchNorm) and the head starts from N(0, 0.01). Reports top-1 and top-5 (%).

(b) ``--mode features`` (the default, and the only mode, for CIFAR arrays), the fast path for
small profiles: the same optimiser family (SGD with momentum, step decay x0.1 at 60% and 80% of
the epochs, cross-entropy, batch 256) trained on cached features of the evaluation view
(:mod:`eval.features`: centre crops of image folders, the bare 32x32 tensors of CIFAR) instead of
augmented images, so the backbone runs once per image. Features are standardised by default (per dimension, with the training
split's mean and standard deviation) so one learning rate (0.1) suits every backbone whatever its
feature scale; ``l2`` (unit rows) and ``none`` (raw, then use Appendix C's lr 10) are options.
:func:`linear_probe_features` is the API the harness calls on CIFAR-10 features for every
WordNet label depth (Table 5).

    python -m eval.linear --checkpoint CKPT --data-root /imagenet --out linear.json   # (a), the default
    python -m eval.linear --checkpoint CKPT --data-root /imagenet --mode features --out fast.json
    python -m eval.linear --checkpoint CKPT --dataset cifar10 --out linear.json       # (b), CIFAR arrays
    python -m eval.linear --checkpoint CKPT --dataset cifar10 --epochs 50 --train-subset 12000 --out probe.json
                                                              # (b) as the mini tables' probe
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eval import cli
from eval.options import HelpFormatter
from eval.classifier import TensorBatches, evaluate, fit, linear_head, sgd_step_decay
from eval.data import random_crop_transform
from eval.features import CheckpointFeatures, resolve_device
from eval.results import result_record, write_result

FEATURE_NORMS = ("standardize", "l2", "none")


@dataclass(frozen=True)
class LinearSchedule:
    """SGD hyper-parameters of a linear classifier; ``milestones`` are epochs where lr *= gamma."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (60, 80)
    gamma: float = 0.1


APPENDIX_C = LinearSchedule()  # Appendix C + MoCo main_lincls's --schedule 60 80
FAST_LR = 0.1  # the fast path's default, on standardised features


def scaled_milestones(epochs: int, fractions: tuple[float, ...] = (0.6, 0.8)) -> tuple[int, ...]:
    """Appendix C's 60/80 of 100 epochs, kept proportional for other epoch counts."""
    return tuple(sorted({max(1, round(epochs * f)) for f in fractions if round(epochs * f) < epochs}))


class FrozenBackboneClassifier(nn.Module):
    """``head(backbone(x))`` with the backbone's gradients off; keep it in eval mode while training."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.head = linear_head(backbone.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone(x)
        return self.head(features)


def linear_evaluation(backbone: nn.Module, train_dataset: Dataset, val_dataset: Dataset, num_classes: int,
                      schedule: LinearSchedule = APPENDIX_C, device: str | torch.device = "auto",
                      workers: int = 4, progress: bool = True, seed: int = 0) -> dict[str, float]:
    """Appendix C's linear evaluation on images (protocol (a)); returns top1/top5 on ``val_dataset``."""
    torch.manual_seed(seed)
    device = resolve_device(device) if isinstance(device, str) else device
    model = FrozenBackboneClassifier(backbone, num_classes).to(device)
    pin = device.type == "cuda"
    train = DataLoader(train_dataset, schedule.batch_size, shuffle=True, num_workers=workers, pin_memory=pin,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(val_dataset, schedule.batch_size, shuffle=False, num_workers=workers, pin_memory=pin)
    optimizer, scheduler = sgd_step_decay([{"params": model.head.parameters(), "lr": schedule.lr}],
                                          schedule.momentum, schedule.weight_decay, schedule.milestones,
                                          schedule.gamma)
    losses = fit(model, train, optimizer, scheduler, schedule.epochs, device, train_mode=False, progress=progress,
                 desc="linear")
    return {**evaluate(model, val, device, progress, desc="val"), "final_train_loss": losses[-1]}


def normalise_features(train_x: torch.Tensor, test_x: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``standardize``: per-dimension z-score with the training split's statistics; ``l2``: unit rows."""
    if how == "standardize":
        mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
        return (train_x - mean) / std, (test_x - mean) / std
    if how == "l2":
        return torch.nn.functional.normalize(train_x, dim=1), torch.nn.functional.normalize(test_x, dim=1)
    if how == "none":
        return train_x, test_x
    raise cli.UsageError(f"unknown feature normalisation {how!r}: choose one of {', '.join(FEATURE_NORMS)}")


def linear_probe_features(train_x, train_y, test_x, test_y, epochs: int = 100, lr: float = FAST_LR,
                          batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 0.0,
                          milestones: tuple[int, ...] | None = None, gamma: float = 0.1,
                          feature_norm: str = "standardize", seed: int = 0, device: str | torch.device = "cpu",
                          num_classes: int | None = None, progress: bool = False) -> dict[str, float]:
    """Protocol (b): a linear classifier on fixed features; returns ``{"top1", "top5", ...}`` in %.

    ``milestones`` default to 60% and 80% of ``epochs`` (Appendix C's 60/80 of 100).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    train_x, test_x = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (train_x, test_x))
    train_y, test_y = (torch.as_tensor(np.asarray(a)).long().view(-1) for a in (train_y, test_y))
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    train_x, test_x = normalise_features(train_x, test_x, feature_norm)
    head = linear_head(train_x.shape[1], num_classes, torch.Generator().manual_seed(seed)).to(device)
    milestones = scaled_milestones(epochs) if milestones is None else tuple(milestones)
    optimizer, scheduler = sgd_step_decay([{"params": head.parameters(), "lr": lr}], momentum, weight_decay,
                                          milestones, gamma)
    train = TensorBatches(train_x.to(device), train_y.to(device), batch_size, shuffle=True, seed=seed)
    losses = fit(head, train, optimizer, scheduler, epochs, device, train_mode=True, progress=progress, desc="probe")
    test = TensorBatches(test_x.to(device), test_y.to(device), 4096, shuffle=False)
    return {**evaluate(head, test, device), "final_train_loss": losses[-1], "num_classes": num_classes}


def add_classifier_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("classifier")
    group.add_argument("--mode", choices=("full", "features"), default=None,
                       help="full: Appendix C on augmented images (default for image folders); features: the "
                            "fast path on cached features (default, and the only mode, for CIFAR arrays)")
    group.add_argument("--epochs", type=int, default=APPENDIX_C.epochs,
                       help="classifier epochs (Appendix C: 100; the mini tables: 50)")
    group.add_argument("--lr", type=float, default=None, help=f"default: {APPENDIX_C.lr} (full) or {FAST_LR} (features)")
    group.add_argument("--batch-size", type=int, default=APPENDIX_C.batch_size, help="classifier batch")
    group.add_argument("--momentum", type=float, default=APPENDIX_C.momentum, help="SGD momentum")
    group.add_argument("--weight-decay", type=float, default=APPENDIX_C.weight_decay, help="SGD weight decay")
    group.add_argument("--milestones", type=int, nargs="*", default=None,
                       help="epochs where lr *= 0.1 (default: 60%% and 80%% of --epochs, i.e. 60 80 of 100)")
    group.add_argument("--feature-norm", choices=FEATURE_NORMS, default="standardize",
                       help="feature scaling before the classifier (features mode only)")


def _schedule(args, mode: str) -> LinearSchedule:
    lr = args.lr if args.lr is not None else (APPENDIX_C.lr if mode == "full" else FAST_LR)
    milestones = tuple(args.milestones) if args.milestones is not None else scaled_milestones(args.epochs)
    return replace(APPENDIX_C, epochs=args.epochs, lr=lr, batch_size=args.batch_size, momentum=args.momentum,
                   weight_decay=args.weight_decay, milestones=milestones)


def run_linear_protocol(args: argparse.Namespace, train: Dataset, val: Dataset, source: CheckpointFeatures
                        ) -> tuple[dict, dict]:
    """Either protocol on (train, val) given in their evaluation view; returns (metrics, settings).

    Full mode re-views ``train`` with RandomResizedCrop + flip (``train.with_transform``).
    """
    mode = args.mode or ("full" if hasattr(train, "with_transform") else "features")
    schedule = _schedule(args, mode)
    num_classes = len(train.classes)
    if mode == "full":
        if not hasattr(train, "with_transform"):
            raise cli.UsageError("--mode full is Appendix C's protocol on image files (augmented crops); for "
                                 "CIFAR arrays use --mode features")
        augmented = train.with_transform(random_crop_transform(args.crop_size))
        metrics = linear_evaluation(source.backbone(), augmented, val, num_classes, schedule, args.device,
                                    args.workers, args.progress, args.seed)
        return metrics, {"mode": "full", **asdict(schedule), "train_transform": repr(augmented.transform),
                         "val_transform": repr(getattr(val, "transform", None))}
    train_features, val_features = source(train), source(val)
    metrics = linear_probe_features(train_features.features, train_features.labels, val_features.features,
                                    val_features.labels, schedule.epochs, schedule.lr, schedule.batch_size,
                                    schedule.momentum, schedule.weight_decay, schedule.milestones, schedule.gamma,
                                    args.feature_norm, args.seed, args.device, num_classes=num_classes or None,
                                    progress=args.progress)
    return metrics, {"mode": "features", **asdict(schedule), "feature_norm": args.feature_norm,
                     "view": repr(getattr(val, "transform", None)),
                     "features_reused_from_cache": [train_features.reused, val_features.reused]}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.linear", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_classification_data_args(parser)
    cli.add_runtime_args(parser)
    add_classifier_args(parser)
    return parser


def main_linear(args: argparse.Namespace) -> dict:
    started = time.time()
    source = cli.feature_source(args)
    train = cli.classification_dataset(args, args.train_split)
    if args.train_subset:
        if not hasattr(train, "balanced_subset"):
            raise cli.UsageError("--train-subset selects CIFAR images (the mini tables' probe); for image folders "
                                 "give a split folder with the images to use")
        train = train.balanced_subset(args.train_subset)
    val = cli.classification_dataset(args, cli.val_split(args))
    metrics, settings = run_linear_protocol(args, train, val, source)
    data = {"dataset": args.dataset, "root": args.data_root, "train_split": args.train_split,
            "train_subset": args.train_subset,
            "val_split": cli.val_split(args), "num_train": len(train), "num_val": len(val),
            "num_classes": len(train.classes)}
    record = result_record("linear", "Table 1 (ImageNet linear), Tables 5-8 (linear probe); Appendix C",
                           source.info, data, settings, metrics, time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_linear, _build_parser(), argv)


if __name__ == "__main__":
    main()
