"""The training configuration: one validated dataclass, saved as ``config.json`` in the run directory.

Defaults are the paper's CIFAR pre-training (Appendix C): SimCLR structure, 1000 epochs, batch
1024, SGD lr 0.5 with 10 warm-up epochs then cosine decay, weight decay 1e-4, momentum 0.9;
pseudo labels re-assigned every 20 epochs at k = {10, 30, 100} (CIFAR-10), accepted linearly
from 0% to 100% (Sec. 4.1 / Table 6 [g]) with the elimination loss.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from ifnd.data import DATASETS
from ifnd.falseneg import DETECTORS
from ifnd.frameworks import FRAMEWORKS
from ifnd.falseneg.incremental import CONFIDENCES, SCHEMES
from ifnd.losses import Objective
from ifnd.models import BACKBONES

MODES = {  # --mode presets: (detector, objective)
    "simclr": ("none", "instance"),             # instance-level learning, Eq. 1
    "supcon": ("true_labels", "attraction"),    # oracle: SupCon's L_out with the true labels
    "ifnd": ("ifnd", "elimination"),            # the paper's method, Eq. 3
}
LR_SCHEDULES = ("cosine", "step")
AMP_MODES = ("auto", "off", "bf16", "fp16")


class ConfigError(ValueError):
    """A configuration that makes no sense, with the way to fix it."""


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    # data
    dataset: str = "cifar10"
    data_root: str | None = None
    train_subset: int = 0          # 0: the whole training split; else a class-balanced subset
    label_map: list[int] | None = None  # original class -> label used by true-label detectors
    # model
    framework: str = "simclr"
    arch: str = "resnet50"         # Sec. 4.1
    cifar_stem: bool = True
    image_size: int = 32
    crop_scale_min: float = 0.2
    # method: which false negatives are detected and how they are removed
    detector: str = "none"
    objective: str = "instance"
    temperature: float = 0.2       # MoCo v2's; the paper states no CIFAR temperature
    cluster_numbers: list[int] = field(default_factory=lambda: [10, 30, 100])  # App. C, CIFAR-10
    acceptance_scheme: str = "linear"   # Sec. 4.1 / Table 6 [g]
    acceptance_initial: float = 0.0
    acceptance_final: float = 1.0
    acceptance_step_at: float = 0.1     # Table 6 [c]: step at epoch 100 of 1000
    refresh_every: int = 20             # App. C: every 20 epochs on CIFAR
    confidence: str = "ifnd"            # Eq. 2; "pcl" = PCL's Eq. 9 (Table 7)
    cluster_on: str = "projection"      # "projection" (z, PCL's code) or "backbone" (f(i), Sec. 3.2)
    kmeans_backend: str = "auto"
    # optimisation (App. C, CIFAR)
    epochs: int = 1000
    batch_size: int = 1024
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 10
    lr_schedule: str = "cosine"
    lr_steps: list[int] = field(default_factory=lambda: [120, 160])  # App. C, ImageNet (x0.1)
    # running
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    threads: int = 0               # torch CPU threads; 0 keeps torch's default
    knn_every: int = 0             # kNN monitor every N epochs (0: only at the end)
    knn_k: int = 200
    progress: bool = True

    def validate(self) -> "TrainConfig":
        for name, options in field_choices().items():
            if getattr(self, name) not in options:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(options)}")
        if (self.detector == "none") != (self.objective == "instance"):
            raise ConfigError(
                f"detector {self.detector!r} with objective {self.objective!r} makes no sense: the instance "
                "objective detects nothing, and a detector needs 'elimination' or 'attraction' "
                f"(presets: {', '.join(f'--mode {m}' for m in MODES)})")
        for name in ("acceptance_initial", "acceptance_final", "acceptance_step_at"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} is outside [0, 1]: acceptance rates are fractions")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "temperature": self.temperature, "refresh_every": self.refresh_every}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name}={value} must be positive")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: contrastive learning needs negatives")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs={self.warmup_epochs} must be in [0, epochs={self.epochs})")
        if not self.cluster_numbers or min(self.cluster_numbers) < 1:
            raise ConfigError(f"cluster_numbers={self.cluster_numbers}: give one or more k >= 1")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min={self.crop_scale_min} must be in (0, 1]")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}: valid keys are {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def field_choices() -> dict[str, tuple[str, ...]]:
    """The named options of each categorical field (also listed by ``--help``)."""
    return {"dataset": DATASETS, "framework": tuple(FRAMEWORKS), "arch": BACKBONES, "detector": tuple(DETECTORS),
            "objective": tuple(o.value for o in Objective), "acceptance_scheme": SCHEMES,
            "confidence": CONFIDENCES, "cluster_on": ("projection", "backbone"), "lr_schedule": LR_SCHEDULES,
            "amp": AMP_MODES, "kmeans_backend": ("auto", "faiss", "torch")}


def _arg_type(annotation: str):
    if "list[int]" in annotation:
        return int, "+"
    if annotation.startswith("int"):
        return int, None
    if annotation.startswith("float"):
        return float, None
    return str, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ifnd.train",
        description="Contrastive pre-training with false-negative detection (SimCLR / SupCon / IFND).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES),
                        help="preset of --detector/--objective: " + "; ".join(f"{m} = {d}+{o}" for m, (d, o) in MODES.items()))
    parser.add_argument("--config", help="a config.json to start from (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt if present")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        annotation = str(hints[f.name])
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"(default {f.default})")
            continue
        choices = field_choices().get(f.name)
        arg_type, nargs = _arg_type(annotation.replace("typing.", "").replace("<class '", "").replace("'>", ""))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parser.add_argument(flag, type=arg_type, nargs=nargs, default=None, choices=choices,
                            help=f"(default {default})")
    return parser


def config_from_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse the CLI into a validated config; returns (config, resume)."""
    args = build_parser().parse_args(argv)
    base = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    if args.mode:
        base["detector"], base["objective"] = MODES[args.mode]
    for f in fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base).validate(), args.resume
