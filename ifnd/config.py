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
from ifnd.falseneg.glofnd import GLOFND_LOSSES
from ifnd.falseneg.incremental import CONFIDENCES, SCHEMES
from ifnd.falseneg.pcl import PCL_CLUSTERING
from ifnd.losses import Objective
from ifnd.models import BACKBONES
from ifnd.optim import OPTIMIZERS

MODES = {  # --mode presets: (detector, objective); MODE_SETTINGS adds a mode's other fields
    "simclr": ("none", "instance"),             # instance-level learning, Eq. 1 (with any --framework)
    "supcon": ("true_labels", "attraction"),    # oracle: SupCon's L_out with the true labels
    "ifnd": ("ifnd", "elimination"),            # the paper's method, Eq. 3
    "pcl": ("ifnd", "protonce"),                # PCL (Li et al., 2021): ProtoNCE, step warm-up, Eq. 9 (Table 7)
    "glofnd": ("glofnd", "elimination"),        # GloFND (Balmaseda et al., 2025): learned thresholds
}
MODE_SETTINGS = {  # PCL: 20 of 200 epochs instance-level, then every label (Table 6 [c]); PCL's Eq. 9 confidence
    "pcl": {"acceptance_scheme": "step", "acceptance_initial": 0.0, "acceptance_final": 1.0,
            "acceptance_step_at": 0.1, "confidence": "pcl", **PCL_CLUSTERING},
}


def mode_settings(mode: str) -> dict:
    """All config fields a ``--mode`` preset sets."""
    detector, objective = MODES[mode]
    return {"detector": detector, "objective": objective, **MODE_SETTINGS.get(mode, {})}


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
    cluster_features: str = "extract"   # "extract": a pass over the training set at each refresh (paper);
                                        # "bank": each sample's z from its latest training step (no pass)
    kmeans_backend: str = "auto"
    loss_kernel: str = "pairs"          # "fused": ifnd/fused_loss.py, two Triton passes for label detectors (CUDA)
    # MoCo v2 (framework=moco; Sec. 4.1 / App. C ImageNet, Table 8)
    moco_momentum: float = 0.999        # key encoder: theta_k <- m theta_k + (1 - m) theta_q
    queue_size: int = 65536             # keys (with their sample indices); a multiple of batch_size
    moco_bn_splits: int = 8             # shuffled-BN groups of the global batch (MoCo: 8 GPUs)
    blur_p: float | None = None         # Gaussian blur probability; None: 0.5 for moco/swav from 64 px, else 0
    # PCL's ProtoNCE (objective=protonce; Table 7)
    pcl_negatives: int = -1             # r negative prototypes; -1: every free cluster, at most 16384
    # GloFND (detector=glofnd; authors' README defaults)
    glofnd_alpha: float = 0.01          # fraction of each anchor's negatives above its threshold
    glofnd_lr: float = 0.05             # Adam step size of the per-sample thresholds
    glofnd_start_epoch: int = 70        # nothing removed nor learned before (official start_update = lda_start)
    # SwAV (framework=swav; App. F, Table 8: 2x160 + 4x96 on ImageNet, scaled to CIFAR's 32 px)
    swav_prototypes: int = 3000
    swav_crop_sizes: list[int] = field(default_factory=lambda: [32, 16])
    swav_crop_counts: list[int] = field(default_factory=lambda: [2, 4])
    swav_crop_min_scale: list[float] = field(default_factory=lambda: [0.14, 0.05])
    swav_crop_max_scale: list[float] = field(default_factory=lambda: [1.0, 0.14])
    swav_epsilon: float = 0.05          # Sinkhorn-Knopp regularisation
    swav_sinkhorn_iters: int = 3
    swav_queue_size: int = 3840         # embeddings kept per assignment crop; 0: no queue
    swav_queue_start_epoch: int = 15
    swav_freeze_prototypes_iters: int = 313
    # Baselines as their authors ran them (docs/baselines.md). The defaults are the suite's earlier behaviour
    # (finished runs keep their identity); ``--mode pcl`` and the baselines' rows in reproduce/specs set these.
    kmeans_redo: int = 1                # k-means restarts, the lowest-inertia one kept (faiss nredo; PCL: 5)
    kmeans_seed: str = "refresh"        # "refresh": a new seed per refresh and level; "level": the level index (PCL)
    tie_break: str = "index"            # equal confidences ranked by sample index, or "random" (seeded per refresh)
    optimizer: str = "sgd"              # "lars": SGD wrapped in LARC, as SwAV (ifnd/optim.py)
    lr_final: float = 0.0               # the cosine schedule's last value (SwAV: 0.0006)
    glofnd_loss: str = "renormalised"   # GloFND's loss: kept negatives rescaled to the full count (official), or
                                        # "elimination" (detected negatives dropped, nothing rescaled)
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
    workers: int = 8               # DataLoader processes for streamed image folders (dataset=folder)
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
        if self.workers < 0 or self.threads < 0:
            raise ConfigError(f"workers={self.workers} and threads={self.threads} must be >= 0")
        if not 0 < self.crop_scale_min <= 1:
            raise ConfigError(f"crop_scale_min={self.crop_scale_min} must be in (0, 1]")
        if self.kmeans_redo < 1:
            raise ConfigError(f"kmeans_redo={self.kmeans_redo} must be at least 1 (one k-means run; PCL: 5)")
        if not 0.0 <= self.lr_final <= self.lr:
            raise ConfigError(f"lr_final={self.lr_final} must be in [0, lr={self.lr}]: the cosine schedule decays "
                              "from lr to lr_final (SwAV: 0.6 -> 0.0006)")
        if self.blur_p is not None and not 0.0 <= self.blur_p <= 1.0:
            raise ConfigError(f"blur_p={self.blur_p} is outside [0, 1]: it is a probability (MoCo v2 / SwAV: 0.5)")
        self._validate_methods()
        if self.framework == "moco":
            self._validate_moco()
        if self.framework == "swav":
            self._validate_swav()
        return self

    def _validate_methods(self) -> None:
        from ifnd.falseneg.pcl import negatives_problem

        if self.objective == "protonce":
            if self.detector != "ifnd":
                raise ConfigError(f"objective 'protonce' needs the clustering detector 'ifnd' (its centroids are "
                                  f"PCL's prototypes), not {self.detector!r}: use --mode pcl or --detector ifnd")
            problem = negatives_problem(self.pcl_negatives, self.cluster_numbers, self.batch_size)
            if problem:
                raise ConfigError(problem)
        elif self.pcl_negatives < -1:
            raise ConfigError(f"pcl_negatives={self.pcl_negatives}: use a count >= 0, or -1 for every free cluster")
        if self.cluster_features == "bank" and self.cluster_on != "projection":
            raise ConfigError("cluster_features='bank' keeps the projections z the training steps compute, so it "
                              "needs cluster_on='projection' (or use cluster_features='extract' for backbone features)")
        if self.detector == "glofnd":
            if not 0.0 < self.glofnd_alpha < 1.0:
                raise ConfigError(f"glofnd_alpha={self.glofnd_alpha} must be in (0, 1): the fraction of each "
                                  "anchor's negatives treated as false negatives (GloFND: 0.01)")
            if not self.glofnd_lr > 0:
                raise ConfigError(f"glofnd_lr={self.glofnd_lr} must be positive (GloFND: 0.05)")
            if not 0 <= self.glofnd_start_epoch < self.epochs:
                raise ConfigError(f"glofnd_start_epoch={self.glofnd_start_epoch} must be in [0, epochs={self.epochs}): "
                                  "before it nothing is removed, so GloFND would never act; lower "
                                  "--glofnd-start-epoch (GloFND: 70 of 200 epochs)")

    def _validate_moco(self) -> None:
        from ifnd.frameworks.moco import queue_size_problem

        problem = queue_size_problem(self.queue_size, self.batch_size)
        if problem:
            raise ConfigError(problem)
        if not 0.0 <= self.moco_momentum < 1.0:
            raise ConfigError(f"moco_momentum={self.moco_momentum} must be in [0, 1) (MoCo: 0.999)")
        if self.moco_bn_splits < 1 or self.batch_size % self.moco_bn_splits:
            raise ConfigError(f"moco_bn_splits={self.moco_bn_splits} must be >= 1 and divide batch_size="
                              f"{self.batch_size} (each group is one emulated GPU of MoCo's shuffled BN)")

    def _validate_swav(self) -> None:
        crops = (self.swav_crop_sizes, self.swav_crop_counts, self.swav_crop_min_scale, self.swav_crop_max_scale)
        if len({len(c) for c in crops}) != 1 or not self.swav_crop_sizes:
            raise ConfigError("swav_crop_sizes, swav_crop_counts, swav_crop_min_scale and swav_crop_max_scale "
                              "need one entry per crop group (App. F: sizes 160 96, counts 2 4, min scales "
                              "0.14 0.05, max scales 1 0.14)")
        if self.swav_crop_counts[0] < 2 or min(self.swav_crop_counts) < 1:
            raise ConfigError(f"swav_crop_counts={self.swav_crop_counts}: the first group needs at least 2 crops "
                              "(SwAV computes codes on two large crops) and every group at least 1")
        if min(self.swav_crop_sizes) < 4:
            raise ConfigError(f"swav_crop_sizes={self.swav_crop_sizes}: crops need at least 4 pixels")
        for lo, hi in zip(self.swav_crop_min_scale, self.swav_crop_max_scale):
            if not 0 < lo <= hi <= 1:
                raise ConfigError(f"swav crop scales ({lo}, {hi}) must satisfy 0 < min <= max <= 1")
        if self.swav_prototypes < 1 or self.swav_sinkhorn_iters < 1 or not self.swav_epsilon > 0:
            raise ConfigError("swav_prototypes and swav_sinkhorn_iters must be >= 1 and swav_epsilon > 0 "
                              "(SwAV: 3000 prototypes, 3 iterations, epsilon 0.05)")
        if self.swav_queue_size and self.swav_queue_size < self.batch_size:
            raise ConfigError(f"swav_queue_size={self.swav_queue_size} is smaller than the batch size "
                              f"{self.batch_size}: the queue keeps past batches, so use at least "
                              f"--swav-queue-size {self.batch_size} (SwAV: 3840 at batch 256), or 0 for none")
        if self.swav_queue_start_epoch < 0 or self.swav_freeze_prototypes_iters < 0:
            raise ConfigError("swav_queue_start_epoch and swav_freeze_prototypes_iters must be >= 0")
        if self.detector == "glofnd":
            raise ConfigError("framework swav averages embeddings by pseudo label (App. F); detector 'glofnd' has "
                              "no labels: use --mode ifnd (or simclr / supcon) with --framework swav")
        if self.objective == "protonce":
            raise ConfigError("objective 'protonce' needs a contrastive framework (simclr or moco), not swav")

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
            "confidence": CONFIDENCES, "cluster_on": ("projection", "backbone"),
            "cluster_features": ("extract", "bank"), "lr_schedule": LR_SCHEDULES, "amp": AMP_MODES,
            "kmeans_backend": ("auto", "faiss", "torch"), "loss_kernel": ("pairs", "fused"),
            "kmeans_seed": ("refresh", "level"), "tie_break": ("index", "random"), "optimizer": OPTIMIZERS,
            "glofnd_loss": GLOFND_LOSSES}


def _arg_type(annotation: str):
    if "list[int]" in annotation:
        return int, "+"
    if "list[float]" in annotation:
        return float, "+"
    if annotation.startswith("int"):
        return int, None
    if annotation.startswith("float") or annotation.startswith("Optional[float]"):
        return float, None
    return str, None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ifnd.train",
        description="Contrastive pre-training with false-negative detection: frameworks SimCLR / MoCo v2 / SwAV; "
                    "methods SimCLR (instance), SupCon oracle, IFND, PCL, GloFND.")
    parser.add_argument("--mode", choices=sorted(MODES),
                        help="preset (flags override it): " + "; ".join(
                            f"{m} = " + " ".join(f"{k}={v}" for k, v in mode_settings(m).items()) for m in MODES))
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
        base.update(mode_settings(args.mode))
    for f in fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base).validate(), args.resume
