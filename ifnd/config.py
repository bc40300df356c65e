"""The training configuration: one validated dataclass, saved as ``config.json`` in the run directory.

Defaults are the paper's CIFAR pre-training (Appendix C): SimCLR structure, 1000 epochs, batch
1024, SGD lr 0.5 with 10 warm-up epochs then cosine decay, weight decay 1e-4, momentum 0.9;
pseudo labels re-assigned every 20 epochs at k = {10, 30, 100} (CIFAR-10), accepted linearly
from 0% to 100% (Sec. 4.1 / Table 6 [g]) with the elimination loss.

This module owns what a config means: which fields define a run (:func:`defining_fields`) and
which only say how a machine runs it (:data:`MACHINE_FIELDS`); one type parser
(:func:`parse_field`) for the command line, the harness's ``--set`` and ``config.json``; and the
validation, which asks each detector's and framework's spec (:mod:`ifnd.falseneg`,
:mod:`ifnd.frameworks`) what it can do instead of knowing method names.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from ifnd.data import DATASETS
from ifnd.falseneg import DETECTORS
from ifnd.falseneg.glofnd import GLOFND_LOSSES
from ifnd.falseneg.incremental import CONFIDENCES, SCHEMES
from ifnd.falseneg.pcl import PCL_CLUSTERING
from ifnd.frameworks import FRAMEWORKS
from ifnd.models import BACKBONES
from ifnd.optim import OPTIMIZERS
from ifnd.pairs import Objective

# --mode presets: the config fields each sets (flags override them). "simclr" is the old name of "instance".
MODES: dict[str, dict] = {
    "instance": {"detector": "none", "objective": "instance"},        # Eq. 1: SimCLR, or MoCo v2 with --framework moco
    "supcon": {"detector": "true_labels", "objective": "attraction"},  # oracle: SupCon's L_out with the true labels
    "ifnd": {"detector": "ifnd", "objective": "elimination"},          # the paper's method, Eq. 3
    # PCL (Li et al., 2021): 20 of 200 epochs instance-level, then every label (Table 6 [c]); its Eq. 9 confidence
    "pcl": {"detector": "pcl", "objective": "instance", "acceptance_scheme": "step", "acceptance_initial": 0.0,
            "acceptance_final": 1.0, "acceptance_step_at": 0.1, "confidence": "pcl", **PCL_CLUSTERING},
    "glofnd": {"detector": "glofnd", "objective": "elimination"},      # GloFND (Balmaseda et al., 2025)
    # beyond the paper: Eq. 3 with the true labels, the ceiling of every elimination detector
    "oracle_elimination": {"detector": "true_labels", "objective": "elimination"},
}
MODE_ALIASES = {"simclr": "instance"}


def mode_settings(mode: str) -> dict:
    """All config fields a ``--mode`` preset (or its alias) sets."""
    return dict(MODES[MODE_ALIASES.get(mode, mode)])


LR_SCHEDULES = ("cosine", "step")
AMP_MODES = ("auto", "off", "bf16", "fp16")


def default_workers() -> int:
    """DataLoader processes: one per CPU core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


class ConfigError(ValueError):
    """A configuration that makes no sense, with the way to fix it."""


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    # data
    dataset: str = "cifar10"
    data_root: str | None = None
    train_subset: int = 0
    label_map: list[int] | None = None
    # model
    framework: str = "simclr"
    arch: str = "resnet50"
    cifar_stem: bool = True
    image_size: int = 32
    crop_scale_min: float = 0.2
    # method: which false negatives are detected and how they are removed
    detector: str = "none"
    objective: str = "instance"
    temperature: float = 0.2
    cluster_numbers: list[int] = field(default_factory=lambda: [10, 30, 100])
    acceptance_scheme: str = "linear"
    acceptance_initial: float = 0.0
    acceptance_final: float = 1.0
    acceptance_step_at: float = 0.1
    refresh_every: int = 20
    confidence: str = "ifnd"
    cluster_on: str = "projection"
    cluster_features: str = "extract"
    kmeans_backend: str = "auto"
    loss_kernel: str = "pairs"
    label_corruption: float = 0.0       # true-label detectors: this fraction of the samples gets a wrong class
    # MoCo v2
    moco_momentum: float = 0.999
    queue_size: int = 65536
    moco_bn_splits: int = 8
    blur_p: float | None = None
    # PCL
    pcl_negatives: int = -1
    # GloFND (authors' README defaults)
    glofnd_alpha: float = 0.01
    glofnd_lr: float = 0.05
    glofnd_start_epoch: int = 70
    # SwAV (App. F, Table 8: 2x160 + 4x96 on ImageNet, scaled to CIFAR's 32 px)
    swav_prototypes: int = 3000
    swav_crop_sizes: list[int] = field(default_factory=lambda: [32, 16])
    swav_crop_counts: list[int] = field(default_factory=lambda: [2, 4])
    swav_crop_min_scale: list[float] = field(default_factory=lambda: [0.14, 0.05])
    swav_crop_max_scale: list[float] = field(default_factory=lambda: [1.0, 0.14])
    swav_epsilon: float = 0.05
    swav_sinkhorn_iters: int = 3
    swav_queue_size: int = 3840
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
    lr_steps: list[int] = field(default_factory=lambda: [120, 160])
    # running
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    threads: int = 0
    workers: int = field(default_factory=default_workers)
    knn_every: int = 0
    knn_k: int = 200
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Check every field (types, ranges, what the detector and framework can do); returns self."""
        for f in fields(self):
            parse_field(f.name, getattr(self, f.name))
        for name, options in field_choices().items():
            if getattr(self, name) not in options:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(options)}")
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
        if not 0.0 <= self.label_corruption <= 1.0:
            raise ConfigError(f"label_corruption={self.label_corruption} is outside [0, 1]: it is the fraction of "
                              "training samples whose label is replaced")
        if self.blur_p is not None and not 0.0 <= self.blur_p <= 1.0:
            raise ConfigError(f"blur_p={self.blur_p} is outside [0, 1]: it is a probability (MoCo v2 / SwAV: 0.5)")
        self._validate_method()
        return self

    def _validate_method(self) -> None:
        """The detector, the objective and the framework together, from what their specs declare."""
        detector, framework = DETECTORS[self.detector], FRAMEWORKS[self.framework]
        presets = ", ".join(f"--mode {m}" for m in MODES)
        if self.objective not in detector.objectives:
            raise ConfigError(f"detector {detector.name!r} serves objective {' or '.join(detector.objectives)}, not "
                              f"{self.objective!r}: use --objective {detector.objectives[0]} (presets: {presets})")
        if self.objective not in framework.objectives:
            able = [n for n, f in FRAMEWORKS.items() if self.objective in f.objectives]
            raise ConfigError(f"framework {framework.name!r} cannot train objective {self.objective!r} (it trains "
                              f"{', '.join(framework.objectives)}): use another --objective, or --framework "
                              f"{' / '.join(able)}")
        if framework.label_detectors_only and not detector.label_based:
            able = [n for n, d in DETECTORS.items() if d.label_based]
            raise ConfigError(f"framework {framework.name!r} reads the detector's labels, and detector "
                              f"{detector.name!r} has none: use --detector {' / '.join(able)}")
        if detector.extra_loss and not framework.contrastive:
            able = [n for n, f in FRAMEWORKS.items() if f.contrastive]
            raise ConfigError(f"detector {detector.name!r} adds a loss on the anchors' embeddings, which framework "
                              f"{framework.name!r} has not: use --framework {' / '.join(able)}")
        if self.loss_kernel == "fused" and not (framework.contrastive and detector.label_based):
            what = (f"framework {framework.name!r} has no contrastive logits" if not framework.contrastive else
                    f"detector {detector.name!r} does not detect by labels")
            raise ConfigError(f"loss_kernel='fused' cannot serve this run ({what}): use --loss-kernel pairs")
        if detector.refreshes and self.refresh_every >= self.epochs:
            raise ConfigError(
                f"detector {detector.name!r} re-detects every refresh_every={self.refresh_every} epochs, but the run "
                f"has epochs={self.epochs}: it would never detect a false negative and train the instance loss "
                f"(--mode instance); use refresh_every < epochs (App. C: 20 of 1000 epochs), e.g. --refresh-every "
                f"{max(1, round(self.epochs * 0.02))}")
        if self.label_corruption and "label_corruption" not in detector.fields:
            able = [n for n, d in DETECTORS.items() if "label_corruption" in d.fields]
            raise ConfigError(f"label_corruption={self.label_corruption} corrupts the true labels, and detector "
                              f"{detector.name!r} reads none: use --detector {' / '.join(able)}, or "
                              "label_corruption=0")
        for spec in (detector, framework):
            problem = spec.check(self)
            if problem:
                raise ConfigError(problem)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> "TrainConfig":
        """A config from a dict of fields (unset ones keep their defaults); every value type-checked.

        ``source`` (e.g. the config.json's path) is named in errors. Fields a detector was recorded
        under before it had a name of its own (:attr:`DetectorSpec.recorded_as`) are read as that detector.
        """
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}a config is a JSON object of fields, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{where}unknown config keys {unknown}: valid keys are {sorted(known)}")
        data = current_fields(data)
        return cls(**{name: parse_field(name, value, source) for name, value in data.items()})

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            data = json.loads(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from err
        except json.JSONDecodeError as err:
            raise ConfigError(f"config {path} is not valid JSON ({err.msg} at line {err.lineno}, column "
                              f"{err.colno}): fix or regenerate it") from err
        return cls.from_dict(data, str(path))


# -- which fields define a run -----------------------------------------------------------------------
MACHINE_FIELDS = ("run_dir", "progress", "threads", "device", "data_root", "loss_kernel", "workers")
"""Fields that only say how a machine runs a run (where, with what resources, which of two kernels
that compute the same loss): the same run on a laptop and on a cluster differs only in these."""


def defining_fields(cfg: TrainConfig | dict) -> dict:
    """The fields that define a run: all but :data:`MACHINE_FIELDS` (a resumed run must match them)."""
    data = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
    return {k: v for k, v in data.items() if k not in MACHINE_FIELDS}


def differing_fields(a: TrainConfig | dict, b: TrainConfig | dict) -> list[str]:
    """The run-defining fields on which two configs differ (sorted)."""
    a, b = current_fields(defining_fields(a)), current_fields(defining_fields(b))
    defaults = TrainConfig().to_dict()
    return sorted(k for k in set(a) | set(b) if a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)))


def check_resumable(saved: dict, cfg: TrainConfig, checkpoint: str | Path) -> None:
    """Refuse to resume ``checkpoint`` (written with config ``saved``) under ``cfg`` when a run-defining
    field differs; the error names each one. Machine fields (threads, device, ...) may differ."""
    differing = differing_fields(saved, cfg)
    if not differing:
        return
    old = {**TrainConfig().to_dict(), **current_fields(saved)}
    changes = ", ".join(f"{k} {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in differing)
    extend = (" A run cannot be extended to more epochs: its learning-rate and acceptance schedules are "
              "fractions of its own epochs, so a longer run differs from its first epoch on; train one with the "
              "new --epochs in a new --run-dir." if "epochs" in differing else "")
    run_dir = Path(checkpoint).parent.parent
    raise ConfigError(f"{checkpoint} was written by a run with other settings ({changes}): resume with the run's "
                      f"own config (--config {run_dir / 'config.json'}) or choose a new --run-dir.{extend}")


def recorded_fields(data: dict) -> dict:
    """``data`` with each detector under the fields its runs were recorded (hashed) with, if any."""
    spec = DETECTORS.get(data.get("detector"))
    if spec is None or not spec.recorded_as or data.get("objective", "instance") not in spec.objectives:
        return dict(data)
    return {**data, **spec.recorded_as}


def current_fields(data: dict) -> dict:
    """The inverse of :func:`recorded_fields`: old fields (e.g. ``objective: protonce``) as today's detector."""
    for spec in DETECTORS.values():
        if spec.recorded_as and all(data.get(k) == v for k, v in spec.recorded_as.items()):
            return {**data, "detector": spec.name, "objective": spec.objectives[0]}
    return dict(data)


# -- types --------------------------------------------------------------------------------------------
@functools.cache
def _field_type(name: str) -> tuple[type, bool, bool]:
    """``(scalar type, is a list, may be None)`` of a TrainConfig field, from its annotation."""
    hint = typing.get_type_hints(TrainConfig)[name]
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _expected(scalar: type, is_list: bool, optional: bool) -> str:
    what = f"a list of {_TYPE_NAMES[scalar].split(' ', 1)[1]}s" if is_list and scalar is not bool else \
        _TYPE_NAMES[scalar]
    return what + (" or null" if optional else "")


def _scalar(scalar: type, value, text: bool):
    """``value`` as ``scalar``, or raise TypeError/ValueError."""
    if text and isinstance(value, str):
        if scalar is bool:
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        return scalar(value.strip()) if scalar is not str else value
    if scalar is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, scalar) and not (scalar is int and isinstance(value, bool)):
        return value
    raise TypeError(value)


def parse_field(name: str, value, where: str = "", text: bool = False):
    """A TrainConfig field's value, type-checked: from config.json or ``--set`` (JSON values), or with
    ``text`` from the command line (strings: ``"0.1"``, ``"true"``, ``"10,30,100"``, ``"null"``).

    ``where`` names the source in the error (a flag such as ``--lr``, ``--set lr``, or a file).
    Integers are accepted for float fields (and returned as floats); nothing else is converted
    unless ``text``. Raises :class:`ConfigError` naming the field, the expected type and ``where``.
    """
    if name not in {f.name for f in fields(TrainConfig)}:
        raise ConfigError(f"{where + ': ' if where else ''}unknown config key {name!r}")
    scalar, is_list, optional = _field_type(name)
    try:
        if text and isinstance(value, str) and value.strip().lower() in ("null", "none") and optional:
            return None
        if value is None and optional:
            return None
        if is_list:
            if text and isinstance(value, str):
                stripped = value.strip()
                value = json.loads(stripped) if stripped.startswith("[") else \
                    [part for part in re.split(r"[,\s]+", stripped) if part]
            if not isinstance(value, (list, tuple)):
                raise TypeError(value)
            return [_scalar(scalar, v, text) for v in value]
        return _scalar(scalar, value, text)
    except (TypeError, ValueError, json.JSONDecodeError):
        source = f" ({where})" if where else ""
        raise ConfigError(f"{name}={value!r}{source}: expected {_expected(scalar, is_list, optional)}") from None


def field_choices() -> dict[str, tuple[str, ...]]:
    """The named options of each categorical field (also listed by ``--help``)."""
    return {"dataset": DATASETS, "framework": tuple(FRAMEWORKS), "arch": BACKBONES, "detector": tuple(DETECTORS),
            "objective": tuple(o.value for o in Objective), "acceptance_scheme": SCHEMES,
            "confidence": CONFIDENCES, "cluster_on": ("projection", "backbone"),
            "cluster_features": ("extract", "bank"), "lr_schedule": LR_SCHEDULES, "amp": AMP_MODES,
            "kmeans_backend": ("auto", "faiss", "torch"), "loss_kernel": ("pairs", "fused"),
            "kmeans_seed": ("refresh", "level"), "tie_break": ("index", "random"), "optimizer": OPTIMIZERS,
            "glofnd_loss": GLOFND_LOSSES}


# -- schedule ---------------------------------------------------------------------------------------
def rescale_schedule(config: dict, base: dict, explicit: set[str]) -> tuple[dict, list[str]]:
    """After ``epochs`` changed from ``base``: warm-up, refresh period and lr steps at the same fraction
    of training, unless set in ``explicit``. Returns (config, one "field old -> new" per change)."""
    config = dict(config)
    base_epochs = base.get("epochs", TrainConfig.epochs)
    if "epochs" not in explicit or config["epochs"] == base_epochs or config["epochs"] < 1:
        return config, []
    ratio = config["epochs"] / base_epochs
    wanted = {"warmup_epochs": min(round(base.get("warmup_epochs", TrainConfig.warmup_epochs) * ratio),
                                   config["epochs"] - 1),
              "refresh_every": max(1, round(base.get("refresh_every", TrainConfig.refresh_every) * ratio))}
    if base.get("lr_schedule") == "step":
        wanted["lr_steps"] = [max(1, round(s * ratio)) for s in base.get("lr_steps", [])]
    changes = []
    for name, value in wanted.items():
        if name not in explicit and config.get(name) != value:
            changes.append(f"{name} {config.get(name)} -> {value}")
            config[name] = value
    return config, changes


# -- command line -------------------------------------------------------------------------------------
def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


HELP = {
    "run_dir": "where config.json, metrics.jsonl, checkpoints/last.pt and final.json go",
    "dataset": "training data ('folder': an ImageNet-style image folder at --data-root)",
    "data_root": "where the data set is",
    "train_subset": "train on a class-balanced subset of this many images (0: the whole training split)",
    "label_map": "original class -> label seen by true-label detectors, one entry per class (e.g. a WordNet depth)",
    "framework": "pre-training framework",
    "arch": "backbone (convnet4: the small CNN of 2-core CPU runs)",
    "cifar_stem": "3x3 stem without max-pool for 32 px images (CIFAR ResNets)",
    "image_size": "training crop size in pixels",
    "crop_scale_min": "smallest area fraction of the random resized crop",
    "detector": "false-negative detector (see the detector groups below)",
    "objective": "what happens to detected false negatives: instance (Eq. 1: nothing detected), elimination "
                 "(Eq. 3: removed from the denominator), attraction (Eq. 4: made positives)",
    "temperature": "contrastive temperature T (MoCo v2's; the paper states none for CIFAR)",
    "cluster_numbers": "k of each clustering level (App. C: 100 300 1000 on CIFAR-100)",
    "refresh_every": "re-cluster every this many epochs (App. C: 20 on CIFAR); must be below --epochs",
    "acceptance_scheme": "how the accepted fraction of pseudo labels grows (Table 6)",
    "acceptance_initial": "accepted fraction at the start",
    "acceptance_final": "accepted fraction at the end",
    "acceptance_step_at": "fraction of training where the step scheme switches (Table 6 [c]: 0.1)",
    "confidence": "how pseudo labels are ranked: ifnd (Eq. 2) or pcl (PCL's Eq. 9)",
    "cluster_on": "features clustered: projection (z, PCL's code) or backbone (f(i), Sec. 3.2)",
    "cluster_features": "extract (a pass over the training set per refresh, the paper) or bank (each sample's z "
                        "from its latest step)",
    "kmeans_backend": "k-means implementation (auto: faiss if installed)",
    "loss_kernel": "pairs (any device) or fused (two Triton passes, CUDA, label-based detectors)",
    "label_corruption": "fraction of the training samples whose true label is replaced by another class, drawn "
                        "with the run's seed (true-label detectors)",
    "moco_momentum": "key encoder momentum m",
    "queue_size": "keys in the queue; a multiple of --batch-size",
    "moco_bn_splits": "shuffled-BN groups of the global batch (MoCo: 8 GPUs)",
    "blur_p": "Gaussian blur probability of the views",
    "pcl_negatives": "negative prototypes r (-1: every free cluster, at most 16384)",
    "glofnd_alpha": "fraction of each anchor's negatives treated as false negatives",
    "glofnd_lr": "Adam step size of the per-sample thresholds",
    "glofnd_start_epoch": "nothing is removed, and no threshold learned, before this epoch (official start_update)",
    "glofnd_loss": "renormalised (kept negatives rescaled to the full count, GloFND's code) or elimination (dropped)",
    "kmeans_redo": "k-means restarts, the lowest-inertia one kept (PCL: 5)",
    "kmeans_seed": "refresh (a new k-means seed per refresh and level) or level (the level index, as PCL)",
    "tie_break": "equal confidences ranked by sample index, or random (seeded per refresh, as PCL's rows)",
    "optimizer": "sgd, or lars (SGD wrapped in LARC, SwAV's)",
    "lr_final": "the cosine schedule's last learning rate (SwAV: 0.0006)",
    "swav_prototypes": "number of prototypes",
    "swav_crop_sizes": "crop size of each crop group (App. F: 160 96)",
    "swav_crop_counts": "crops per group (App. F: 2 4)",
    "swav_crop_min_scale": "smallest area fraction per group",
    "swav_crop_max_scale": "largest area fraction per group",
    "swav_epsilon": "Sinkhorn-Knopp regularisation",
    "swav_sinkhorn_iters": "Sinkhorn-Knopp iterations",
    "swav_queue_size": "embeddings kept per assignment crop (0: no queue)",
    "swav_queue_start_epoch": "first epoch that uses the queue",
    "swav_freeze_prototypes_iters": "steps before the prototypes start to learn",
    "epochs": "training epochs (warm-up and refresh period follow it in proportion unless given)",
    "batch_size": "global batch size",
    "lr": "peak learning rate (SGD)",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "warmup_epochs": "linear warm-up epochs; must be below --epochs",
    "lr_schedule": "after warm-up: cosine decay, or x0.1 at --lr-steps",
    "lr_steps": "epochs where the step schedule multiplies the lr by 0.1",
    "seed": "seed of the initialisation, data order and augmentations",
    "device": "auto (CUDA if visible), cpu, cuda, cuda:N",
    "amp": "mixed precision (auto: bf16 on CUDA, off on CPU)",
    "threads": "torch CPU threads (0: torch's default)",
    "workers": "DataLoader processes for streamed image folders",
    "knn_every": "kNN monitor every N epochs (0: only at the end)",
    "knn_k": "neighbours of the kNN monitor",
    "progress": "progress bars and one line per epoch on stderr",
}
_GROUPS = {
    "data": ("dataset", "data_root", "train_subset", "label_map"),
    "model": ("framework", "arch", "cifar_stem", "image_size", "crop_scale_min", "blur_p"),
    "method": ("detector", "objective", "temperature", "loss_kernel"),
    "optimisation": ("epochs", "batch_size", "lr", "momentum", "weight_decay", "warmup_epochs", "lr_schedule",
                     "lr_steps", "optimizer", "lr_final"),
    "running": ("run_dir", "seed", "device", "amp", "threads", "workers", "knn_every", "knn_k", "progress"),
}


def _groups() -> dict[str, tuple[str, ...]]:
    """``--help`` groups: general ones, then each detector's and framework's own fields (from its spec)."""
    groups = {"data": _GROUPS["data"], "model": _GROUPS["model"], "method": _GROUPS["method"]}
    taken = set().union(*_GROUPS.values())
    for kind, registry in (("detector", DETECTORS), ("framework", FRAMEWORKS)):
        for spec in registry.values():
            own = tuple(f for f in spec.fields if f not in taken)
            taken.update(own)
            if own:
                groups[f"{kind} {spec.name}: {spec.help}"] = own
    groups["optimisation"], groups["running"] = _GROUPS["optimisation"], _GROUPS["running"]
    rest = tuple(f.name for f in fields(TrainConfig) if f.name not in taken)
    if rest:
        groups["other"] = rest
    return groups


_DEFAULT_TEXT = {"data_root": "$IFND_DATA_ROOT, then the shared data folder",
                 "blur_p": "0.5 for MoCo v2 / SwAV from 64 px, else 0",
                 "workers": f"one per CPU core, at most 8: {default_workers()} here"}


def _default_text(f: dataclasses.Field) -> str:
    if f.name in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[f.name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, list):
        return " ".join(map(str, default))
    return str(default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ifnd.train", usage="%(prog)s [--mode MODE] [--config FILE] [--resume] [--FIELD VALUE ...]",
        description="Contrastive pre-training with false-negative detection. Frameworks: " + "; ".join(
            f"{n} ({s.help})" for n, s in FRAMEWORKS.items()) + ". Detectors: " + "; ".join(
            f"{n} ({s.help})" for n, s in DETECTORS.items()) + ".")
    start = parser.add_argument_group("start")
    start.add_argument("--mode", choices=list(MODES) + list(MODE_ALIASES), metavar="MODE",
                       help="preset, flags override it: " + "; ".join(
                           f"{m} = " + " ".join(f"{k}={v}" for k, v in mode_settings(m).items()) for m in MODES)
                       + "; " + "; ".join(f"{a} = {m}" for a, m in MODE_ALIASES.items()))
    start.add_argument("--config", help="a config.json to start from (flags override it)")
    start.add_argument("--resume", action="store_true",
                       help="continue RUN_DIR/checkpoints/last.pt; the run-defining fields must match the run's")
    by_name = {f.name: f for f in fields(TrainConfig)}
    choices = field_choices()
    for title, names in _groups().items():
        group = parser.add_argument_group(title)
        for name in names:
            f = by_name[name]
            scalar, is_list, _ = _field_type(name)
            text = HELP[name] + f" (default: {_default_text(f)})"
            if scalar is bool:
                group.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None, help=text)
            elif name in choices:
                group.add_argument(flag(name), default=None, choices=choices[name], help=text)
            else:
                metavar = {int: "N", float: "X", str: "TEXT"}[scalar]
                group.add_argument(flag(name), default=None, nargs="+" if is_list else None, metavar=metavar,
                                   help=text)
    return parser


def with_flags(message: str) -> str:
    """A config error as the command line reads it: the flags of the fields it names."""
    names = [f.name for f in fields(TrainConfig) if re.search(rf"\b{f.name}=", message)]
    missing = [flag(n) for n in names if flag(n) not in message]
    return message + (f" [{', '.join(missing)}]" if missing else "")


def config_from_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse the CLI into a validated config; returns (config, resume).

    ``--epochs`` without ``--warmup-epochs`` / ``--refresh-every`` rescales them in proportion to the
    starting config (:func:`rescale_schedule`) and says so on stderr.
    """
    import sys

    args = build_parser().parse_args(argv)
    try:
        base = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
        start = dict(base)
        if args.mode:
            start.update(mode_settings(args.mode))
        explicit = set()
        for f in fields(TrainConfig):
            value = getattr(args, f.name)
            if value is not None:
                start[f.name] = parse_field(f.name, value, flag(f.name), text=True)
                explicit.add(f.name)
        start, changes = rescale_schedule(start, base, explicit)
        if changes:
            print(f"--epochs {start['epochs']}: {', '.join(changes)} (the same fraction of training as the "
                  f"starting config's {base['epochs']} epochs; give the flags to choose)", file=sys.stderr)
        return TrainConfig.from_dict(start).validate(), args.resume
    except ConfigError as err:
        raise ConfigError(with_flags(str(err))) from None
