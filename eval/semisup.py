"""Semi-supervised learning on ImageNet with 1% or 10% of the labels (Table 2).

Protocol of Appendix C, which follows SimCLR (Chen et al., 2020b) and uses SimCLR's label subsets
(``imagenet_subsets/1percent.txt`` / ``10percent.txt``, read by :func:`eval.data.imagenet_subset`):
the whole pre-trained ResNet-50 and a new linear classifier are fine-tuned for 20 epochs with SGD,
batch 256, momentum 0.9, weight decay 0.0005; learning rate 0.01 for the backbone and 0.1 (10%
labels) or 1 (1% labels) for the classifier; all rates multiplied by 0.2 at epochs 12 and 16.
The paper names no augmentation; we use the linear evaluation's RandomResizedCrop(224) + flip
for training and Resize(256) + CenterCrop(224) for the ImageNet validation set, and BatchNorm in
training mode (the whole network is fine-tuned). Reports top-1 and top-5 (%) on ``val``
(Table 2 lists top-5).

    python -m eval.semisup --checkpoint CKPT --imagenet-root /imagenet \
        --subset-file imagenet_subsets/1percent.txt --label-percent 1 --out semisup1.json
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from eval import cli
from eval.options import HelpFormatter
from eval.checkpoints import load_backbone
from eval.classifier import evaluate, fit, linear_head, sgd_step_decay
from eval.data import center_crop_transform, image_folder, imagenet_subset, random_crop_transform
from eval.features import resolve_device
from eval.linear import scaled_milestones
from eval.results import result_record, write_result

HEAD_LR = {1: 1.0, 10: 0.1}  # Appendix C: classifier lr 1 with 1% of the labels, 0.1 with 10%


@dataclass(frozen=True)
class FineTuneSchedule:
    epochs: int = 20
    batch_size: int = 256
    backbone_lr: float = 0.01
    head_lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (12, 16)
    gamma: float = 0.2


def appendix_c_schedule(label_percent: int) -> FineTuneSchedule:
    if label_percent not in HEAD_LR:
        raise cli.UsageError(f"label fraction {label_percent}% is not one of the paper's (1 or 10): "
                             "give --head-lr explicitly for other fractions")
    return FineTuneSchedule(head_lr=HEAD_LR[label_percent])


def fine_tune(backbone: nn.Module, train_dataset: Dataset, val_dataset: Dataset, num_classes: int,
              schedule: FineTuneSchedule, device: str | torch.device = "auto", workers: int = 4,
              progress: bool = True, seed: int = 0) -> dict[str, float]:
    """Fine-tune ``backbone`` + a linear head on ``train_dataset``; top-1/top-5 on ``val_dataset``."""
    torch.manual_seed(seed)
    device = resolve_device(device) if isinstance(device, str) else device
    head = linear_head(backbone.out_dim, num_classes)
    model = nn.Sequential(backbone.requires_grad_(True), head).to(device)
    pin = device.type == "cuda"
    train = DataLoader(train_dataset, schedule.batch_size, shuffle=True, num_workers=workers, pin_memory=pin,
                       drop_last=False, generator=torch.Generator().manual_seed(seed))
    val = DataLoader(val_dataset, schedule.batch_size, shuffle=False, num_workers=workers, pin_memory=pin)
    optimizer, scheduler = sgd_step_decay(
        [{"params": backbone.parameters(), "lr": schedule.backbone_lr},
         {"params": head.parameters(), "lr": schedule.head_lr}],
        schedule.momentum, schedule.weight_decay, schedule.milestones, schedule.gamma)
    losses = fit(model, train, optimizer, scheduler, schedule.epochs, device, train_mode=True, progress=progress,
                 desc="fine-tune")
    return {**evaluate(model, val, device, progress, desc="val"), "final_train_loss": losses[-1]}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.semisup", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    cli.add_checkpoint_args(parser)
    cli.add_runtime_args(parser, feature_cache=False)
    group = parser.add_argument_group("data")
    group.add_argument("--data-root", "--imagenet-root", dest="imagenet_root", metavar="DIR",
                       required=True, help="folder holding train/<wnid>/ and val/<wnid>/")
    group.add_argument("--subset-file", required=True, help="SimCLR's 1percent.txt or 10percent.txt")
    group.add_argument("--label-percent", type=int, required=True, help="1 or 10: selects the head lr")
    group.add_argument("--val-split", default="val")
    group.add_argument("--resize-size", type=int, default=256)
    group.add_argument("--crop-size", type=int, default=224)
    group = parser.add_argument_group("fine-tuning (defaults: Appendix C)")
    group.add_argument("--epochs", type=int, default=FineTuneSchedule.epochs)
    group.add_argument("--batch-size", type=int, default=FineTuneSchedule.batch_size)
    group.add_argument("--backbone-lr", type=float, default=FineTuneSchedule.backbone_lr)
    group.add_argument("--head-lr", type=float, default=None, help="default: 1 (1%%) or 0.1 (10%%)")
    group.add_argument("--milestones", type=int, nargs="*", default=None,
                       help="epochs where all lrs *= 0.2 (default: 60%% and 80%% of --epochs, i.e. 12 16 of 20)")
    return parser


def main_semisup(args: argparse.Namespace) -> dict:
    started = time.time()
    schedule = (appendix_c_schedule(args.label_percent) if args.head_lr is None
                else FineTuneSchedule(head_lr=args.head_lr))
    milestones = tuple(args.milestones) if args.milestones is not None else scaled_milestones(args.epochs)
    schedule = replace(schedule, epochs=args.epochs, batch_size=args.batch_size, backbone_lr=args.backbone_lr,
                       milestones=milestones)
    train = imagenet_subset(args.imagenet_root, args.subset_file, random_crop_transform(args.crop_size))
    val = image_folder(args.imagenet_root, args.val_split, center_crop_transform(args.resize_size, args.crop_size))
    if val.classes != train.classes:
        raise cli.UsageError(f"the class folders of {args.val_split}/ and train/ differ ({len(val.classes)} vs "
                             f"{len(train.classes)}): both must hold the same class folders")
    backbone, info = load_backbone(args.checkpoint, args.arch, args.cifar_stem, args.trust_checkpoint)
    metrics = fine_tune(backbone, train, val, len(train.classes), schedule, args.device, args.workers,
                        args.progress, args.seed)
    data = {"imagenet_root": args.imagenet_root, "subset_file": args.subset_file,
            "label_percent": args.label_percent, "num_train": len(train), "num_val": len(val),
            "num_classes": len(train.classes)}
    record = result_record("semisup", "Table 2; Appendix C", info, data,
                           {**asdict(schedule), "train_transform": repr(train.transform)}, metrics,
                           time.time() - started)
    write_result(args.out, record)
    return record


def main(argv=None) -> dict | None:
    return cli.run(main_semisup, _build_parser(), argv)


if __name__ == "__main__":
    main()
