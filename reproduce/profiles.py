"""Profiles: how big a reproduction is.

=======  =================================  ==============================================================
profile  where                              what it runs
=======  =================================  ==============================================================
smoke    CI, seconds per run                every table's plumbing: 512 images, 2 epochs, convnet4, 1 seed
mini     2-core CPU, <= 45 min a table [1]  CIFAR-10 (12k-image subset, 7 epochs, convnet4, bf16, 3 seeds);
                                            Table 5 over 4 of CIFAR-10's WordNet levels, CIFAR-10 in place of
                                            CIFAR-100 for Tables 6-7, CIFAR-10 stand-ins for Tables 4 and 8
cifar    one GPU                            Appendix C: ResNet-50 (CIFAR stem), batch 1024, 1000 epochs,
                                            lr 0.5, 10 warm-up epochs, cosine, refresh every 20 epochs
paper    SLURM, 8 GPUs per job              Sec. 4.1 / App. C exactly: ImageNet (MoCo v2 settings), CIFAR as
                                            ``cifar``, VOC07 / Places205 / COCO transfer
rehearsal  a laptop, <= 30 min in all        ``paper`` scaled only in size (epochs, images, image size, batch,
                                            queues, cluster numbers; 2 processes per job; convnet4 on CIFAR)
                                            on synthetic data in the real layouts (:mod:`reproduce.rehearsal`):
                                            every code path of ``paper`` before a cluster is booked; numbers
                                            mean nothing
=======  =================================  ==============================================================

[1] from empty, on a CPU with native bf16 (AVX-512); Table 6 about 50 minutes, Table 7 (the PCL ablation) 65.

A profile is plain data. Command-line overrides (``--set key=value``, ``--seeds N``) make a new
one: a TrainConfig field goes to every pre-training run (``cifar.<field>`` or ``imagenet.<field>``
for one kind), ``probe.<key>`` to the linear probe, any other name to the profile itself.
TrainConfig values are parsed and type-checked by :func:`ifnd.config.parse_field`, as on the
trainer's command line. Overriding ``epochs`` alone rescales ``warmup_epochs`` and ``refresh_every``
in proportion (:func:`ifnd.config.rescale_schedule`, as ``python -m ifnd.train --epochs``: so
``--set epochs=20`` on the ``cifar`` profile still refreshes pseudo labels and warms up), unless
they are set too.

The ``mini`` numbers and the arithmetic that keeps every table under 45 minutes on 2 CPU cores
are in :func:`reproduce.budget.estimate` and the README section "Reproducing the tables".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace

from ifnd.config import ConfigError, TrainConfig, parse_field, rescale_schedule
from ifnd.falseneg.pcl import PCL_CLUSTERING


class ProfileError(ValueError):
    """An unknown profile or a bad override, with what is valid."""


# Every semantically relevant TrainConfig field is set explicitly here, so that a run's identity
# (reproduce.runs) does not silently follow a changed library default.
_CIFAR_APPENDIX_C = {
    "dataset": "cifar10", "arch": "resnet50", "cifar_stem": True, "image_size": 32, "crop_scale_min": 0.2,
    "framework": "simclr", "temperature": 0.2, "cluster_numbers": [10, 30, 100], "refresh_every": 20,
    "cluster_on": "projection", "epochs": 1000, "batch_size": 1024, "lr": 0.5, "momentum": 0.9,
    "weight_decay": 1e-4, "warmup_epochs": 10, "lr_schedule": "cosine", "amp": "auto", "train_subset": 0,
    "knn_k": 200, "acceptance_scheme": "linear", "acceptance_initial": 0.0, "acceptance_final": 1.0,
    "acceptance_step_at": 0.1, "confidence": "ifnd",
}
# IFND clusters "following the same procedure in PCL" (Sec. 3.2), i.e. PCL's run_kmeans: 5 restarts, the seed
# of each level its index. Set for every ImageNet run and the paper profile's CIFAR runs; the smoke, mini and
# cifar profiles keep the earlier k-means (1 run, a seed per refresh) so their finished runs keep their
# identity (their PCL rows use PCL's k-means through --mode pcl; docs/baselines.md).
_PCL_KMEANS = {"kmeans_redo": PCL_CLUSTERING["kmeans_redo"], "kmeans_seed": PCL_CLUSTERING["kmeans_seed"]}
# Sec. 4.1 / App. C, ImageNet: MoCo v2 / PCL settings.
_IMAGENET_PAPER = {
    "dataset": "folder", "arch": "resnet50", "cifar_stem": False, "image_size": 224, "crop_scale_min": 0.2,
    "framework": "moco", "temperature": 0.2, "cluster_numbers": [1000, 3000, 10000], "refresh_every": 1,
    "cluster_on": "projection", "epochs": 200, "batch_size": 256, "lr": 0.03, "momentum": 0.9,
    "weight_decay": 1e-4, "warmup_epochs": 0, "lr_schedule": "step", "lr_steps": [120, 160], "amp": "auto",
    "train_subset": 0, "knn_k": 200, "acceptance_scheme": "linear", "acceptance_initial": 0.0,
    "acceptance_final": 1.0, "acceptance_step_at": 0.1, "confidence": "ifnd", **_PCL_KMEANS,
}


# The detection-quality figure's trend claims are tested only with n >= 3 seeds (reproduce.stats.MIN_N).
MIN_SEEDS = {"detection_quality": 3}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    cifar: dict                          # TrainConfig fields of every CIFAR pre-training run
    imagenet: dict                       # TrainConfig fields of every ImageNet pre-training run
    seeds: int = 1                       # training seeds of every compared run
    table_seeds: dict = field(default_factory=dict)  # per-spec cap on seeds (budget), e.g. {"table7": 1}
    min_seeds: dict = field(default_factory=lambda: dict(MIN_SEEDS))  # per-spec floor on seeds (claims need n >= 3)
    snapshot_fractions: tuple = (1.0,)   # checkpoints kept at these fractions of training (Figures 3, 7)
    probe_protocol: str = "linear"       # "linear" (eval.linear on cached features) or "knn"
    probe: dict = field(default_factory=dict)  # eval.linear.linear_probe_features settings
    probe_train_subset: int = 0          # images of the training split the probe learns from (0: all)
    eval_test_subset: int = 0            # test images of the CIFAR evaluations (0: all)
    nmi_seeds: int = 5                   # Table 4: k-means five times
    tsne_points: int = 2000
    tsne_perplexity: float = 30.0
    tsne_iterations: int = 1000          # sklearn's default; 250 is its minimum
    table5_levels: str = "datasets"      # "cifar10_wordnet": Table 5 over CIFAR-10's WordNet levels
    table5_classes: tuple = ()           # at "cifar10_wordnet": the levels run, by number of classes (): all
    oracle_levels: str = "all"           # the oracle-elimination rows (Tables 5, 6): at "all" of Table 5's columns,
                                         # the "finest" (the data set's own classes, shared with Table 6 [o]), "none"
    cifar100_tables: bool = True         # Tables 6-7 on CIFAR-100 (else CIFAR-10 in its place)
    cifar_standins: bool = False         # Tables 4 and 8 on CIFAR-10 when ImageNet runs are out of scope
    imagenet_runs: bool = False          # ImageNet / VOC / Places / COCO rows are run (with the data)
    train_images_per_second: float = 0.0  # calibrated throughput for budget estimates (0: unknown)
    eval_images_per_second: float = 0.0
    minutes_per_table: float = 0.0       # the budget a table must fit from empty (0: none)
    table_minutes: dict = field(default_factory=dict)  # per-spec budgets above it, e.g. {"table7": 65}
    processes_per_job: int = 1           # torch.distributed processes of a pre-training job with the inline and
                                         # local launchers (SLURM: tasks_per_node of the cluster config)
    cifar100_clusters: tuple = (100, 300, 1000)  # IFND's k on CIFAR-100 (App. C)
    imagenet_methods: dict = field(default_factory=dict)  # method -> TrainConfig fields of its ImageNet runs
    eval_args: dict = field(default_factory=dict)  # eval module -> extra arguments (its sizes), e.g. --epochs
    overrides: tuple = ()                # what the command line changed, for the table header

    def seeds_for(self, spec: str) -> int:
        return max(1, self.min_seeds.get(spec, 1), min(self.seeds, self.table_seeds.get(spec, self.seeds)))

    def minutes_for(self, spec: str) -> float:
        return self.table_minutes.get(spec, self.minutes_per_table)

    def train_fields(self, kind: str = "cifar") -> dict:
        return dict(self.imagenet if kind == "imagenet" else self.cifar)

    def snapshot_epochs(self, epochs: int) -> tuple[int, ...]:
        """Epochs whose checkpoints are kept: the fractions of ``epochs``, rounded, at least 1, distinct."""
        return tuple(sorted({min(epochs, max(1, round(f * epochs))) for f in self.snapshot_fractions}))

    def summary(self) -> str:
        c = self.cifar
        subset = f"{c['train_subset']}-image subset" if c.get("train_subset") else "full training split"
        return (f"{c['arch']}, {subset}, {c['epochs']} epochs, batch {c['batch_size']}, lr {c['lr']}, "
                f"seeds {self.seeds}, probe: {self.probe_protocol}"
                + (f" ({self.probe.get('epochs')} epochs)" if self.probe_protocol == "linear" else ""))


_CIFAR_GPU = Profile(
    name="cifar",
    description="one GPU, Appendix C CIFAR settings (ResNet-50, batch 1024, 1000 epochs)",
    cifar=dict(_CIFAR_APPENDIX_C), imagenet=dict(_IMAGENET_PAPER),
    seeds=1, snapshot_fractions=(0.1, 0.4, 0.7, 1.0), probe={"epochs": 100, "lr": 0.1, "batch_size": 256},
    nmi_seeds=5, tsne_points=5000, table5_levels="datasets", cifar100_tables=True, cifar_standins=False,
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="plumbing of every table in seconds (CI): tiny subset, 2 epochs, convnet4",
        cifar={**_CIFAR_APPENDIX_C, "arch": "convnet4", "cifar_stem": False, "epochs": 2, "batch_size": 64,
               "lr": 0.3, "warmup_epochs": 0, "refresh_every": 1, "train_subset": 512, "amp": "off",
               "knn_k": 20},
        imagenet={**_IMAGENET_PAPER, "arch": "convnet4", "image_size": 32, "epochs": 2, "batch_size": 64,
                  "train_subset": 512, "refresh_every": 1, "cluster_numbers": [10, 30, 100], "knn_k": 20},
        seeds=1, snapshot_fractions=(0.5, 1.0), probe={"epochs": 5, "lr": 0.1, "batch_size": 128},
        probe_train_subset=512, eval_test_subset=500, nmi_seeds=2, tsne_points=150, tsne_perplexity=10.0,
        tsne_iterations=250, min_seeds={},  # plumbing: one seed everywhere
        table5_levels="cifar10_wordnet", cifar100_tables=False, cifar_standins=True,
    ),
    "mini": Profile(
        name="mini",
        description="2-core CPU, at most 45 minutes a table (Tables 6, 7: 50, 65): CIFAR-10, convnet4, bf16, 3 seeds",
        cifar={**_CIFAR_APPENDIX_C, "arch": "convnet4", "cifar_stem": False, "epochs": 7, "batch_size": 256,
               "lr": 0.3, "warmup_epochs": 1, "refresh_every": 2, "train_subset": 12000, "amp": "bf16"},
        imagenet=dict(_IMAGENET_PAPER),
        # 3 seeds: the claims' t-intervals need n >= 3 (reproduce.stats.MIN_N); Table 5 keeps four of CIFAR-10's
        # six WordNet levels and the oracle row at 10 classes only, to train from empty within 45 minutes
        seeds=3, snapshot_fractions=(0.25, 0.5, 1.0),
        probe={"epochs": 50, "lr": 0.1, "batch_size": 256}, probe_train_subset=12000, eval_test_subset=0,
        nmi_seeds=5, tsne_points=2000, table5_levels="cifar10_wordnet", table5_classes=(2, 3, 6, 10),
        cifar100_tables=False, oracle_levels="finest",
        # measured on a 2-core AVX-512 (bf16) CPU (2026-12-01): ~880 images/s inline with 2 threads, and with
        # --launcher local (2 jobs x 1 thread); bf16 on a CPU without native bf16 is ~9x slower (docs/performance.md §6)
        cifar_standins=True, train_images_per_second=880.0, eval_images_per_second=4000.0,
        # from empty at 3 seeds (estimates): Table 6 ~46 minutes, Table 7 (the PCL ablation, 11 rows) ~64; their
        # claims need n >= 3 more than the 45 minutes (measured: Table 5 41 min 12 s, estimated 40)
        minutes_per_table=45.0, table_minutes={"table6": 50.0, "table7": 65.0},
    ),
    "cifar": _CIFAR_GPU,
    # the same CIFAR settings, plus the ImageNet runs and transfer benchmarks
    "paper": replace(_CIFAR_GPU, name="paper", imagenet_runs=True, cifar={**_CIFAR_APPENDIX_C, **_PCL_KMEANS},
                     description="exact paper settings: ImageNet (8 GPUs per job), CIFAR as Appendix C, "
                                 "transfer benchmarks"),
}

# ``paper`` scaled only in size (reproduce.rehearsal writes the synthetic data it runs on): every
# code path of the paper's runs, in minutes on a laptop; its numbers mean nothing.
_REHEARSAL_IMAGENET = {  # 224 -> 16 px, 200 -> 2 epochs, 1.28M -> 256 images, k and queues / 100
    **_IMAGENET_PAPER, "image_size": 16, "epochs": 2, "batch_size": 32, "lr_steps": [1, 2],
    "cluster_numbers": [10, 30, 100], "train_subset": 256, "knn_k": 20, "queue_size": 64, "workers": 1,
    "moco_bn_splits": 2, "swav_prototypes": 30, "swav_queue_start_epoch": 1, "swav_freeze_prototypes_iters": 4,
}
_REHEARSAL_SWAV = {"swav_crop_sizes": [12, 8], "swav_queue_size": 128}  # 2x160 + 4x96 px, 3840 -> 128
PROFILES["rehearsal"] = replace(
    PROFILES["paper"], name="rehearsal",
    description="rehearsal: synthetic data, numbers meaningless — the paper profile's code paths at toy sizes "
                "(python -m reproduce make-rehearsal-data)",
    # convnet4 for CIFAR: ResNet-50's CIFAR stem evaluates 32 px images at 16x the cost of the ImageNet side
    cifar={**_CIFAR_APPENDIX_C, **_PCL_KMEANS, "arch": "convnet4", "cifar_stem": False, "image_size": 16, "epochs": 2,
           "batch_size": 32, "warmup_epochs": 0, "refresh_every": 1, "knn_k": 20, "train_subset": 0},
    imagenet=_REHEARSAL_IMAGENET,
    cifar100_clusters=(10, 30, 100),
    min_seeds={},  # one seed everywhere: the rehearsal proves code paths, its numbers mean nothing
    imagenet_methods={"pcl": {"cluster_numbers": [25, 50, 100], "queue_size": 64, "pcl_negatives": -1},
                      "swav": _REHEARSAL_SWAV,
                      "ifnd_swav": _REHEARSAL_SWAV},
    snapshot_fractions=(0.5, 1.0), probe={"epochs": 2, "lr": 0.1, "batch_size": 64}, nmi_seeds=2,
    tsne_points=100, tsne_perplexity=10.0, tsne_iterations=250, processes_per_job=2,
    eval_args={  # 224 -> 16 px crops, Appendix C's epochs -> 1
        "eval.linear": ["--resize-size", 18, "--crop-size", 16, "--epochs", 1, "--batch-size", 64, "--workers", 1],
        "eval.semisup": ["--resize-size", 18, "--crop-size", 16, "--epochs", 1, "--batch-size", 32, "--workers", 1],
        "eval.voc07": ["--resize-size", 18, "--crop-size", 16, "--folds", 2, "--workers", 1],
        "eval.places205": ["--resize-size", 18, "--crop-size", 16, "--epochs", 1, "--batch-size", 64, "--workers", 1],
        "eval.clustering": ["--resize-size", 18, "--crop-size", 16, "--workers", 1],
        # where detectron2 is installed: 2 iterations of one CPU process at 64 px (COCO 2x: 180k on 8 GPUs)
        "eval.detection.launch": ["--num-gpus", 1, "--norm", "naiveSyncBN", "MODEL.DEVICE", "cpu",
                                  "SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.STEPS", "()",
                                  "SOLVER.CHECKPOINT_PERIOD", 1000, "TEST.PRECISE_BN.NUM_ITER", 1,
                                  "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", 64, "INPUT.MIN_SIZE_TEST",
                                  64, "INPUT.MAX_SIZE_TEST", 64, "DATALOADER.NUM_WORKERS", 0],
    },
)

_TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
_PROFILE_FIELDS = {f.name: f for f in fields(Profile)}
_FIXED = {"name", "description", "cifar", "imagenet", "overrides", "probe"}
_CHOICES = {"table5_levels": ("datasets", "cifar10_wordnet"), "oracle_levels": ("all", "finest", "none"),
            "probe_protocol": ("linear", "knn")}
_SET_BY_HARNESS = ("run_dir", "progress", "threads", "device")  # run_dir from the run's hash, the rest by the launcher


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ProfileError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
                           "(smoke: CI plumbing, mini: 2-core CPU, cifar: one GPU, paper: SLURM, rehearsal: paper on "
                           "synthetic data)")
    return PROFILES[name]


def parse_value(text: str):
    """``--set`` values: JSON (numbers, true/false, null, [lists]), ``a,b,c`` lists, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(part.strip()) for part in text.split(",") if part.strip()]
    return text


def check_table5_classes(counts: tuple, where: str) -> None:
    """``table5_classes`` must name CIFAR-10 WordNet levels (:func:`wordnet_hierarchy.cifar10_levels`)."""
    from wordnet_hierarchy import cifar10_levels

    levels = [count for _, count in cifar10_levels()]
    unknown = [c for c in counts if c not in levels]
    if unknown or len(set(counts)) != len(counts):
        raise ProfileError(f"{where}={','.join(map(str, counts))}: give distinct numbers of classes among "
                           f"CIFAR-10's WordNet levels ({', '.join(map(str, levels))}), or [] for all of them")


def apply_overrides(profile: Profile, sets: list[str] | None = None, seeds: int | None = None) -> Profile:
    """A new profile with ``--set key=value`` items and ``--seeds`` applied (see the module doc)."""
    items, texts = [], {}
    for item in sets or []:
        if "=" not in item:
            raise ProfileError(f"--set {item!r}: write key=value, e.g. --set epochs=20")
        key, text = item.split("=", 1)
        items.append((key.strip(), parse_value(text.strip())))
        texts[key.strip()] = text.strip()
    cifar, imagenet, probe = dict(profile.cifar), dict(profile.imagenet), dict(profile.probe)
    explicit = {"cifar": set(), "imagenet": set()}
    changes: dict = {}
    for key, value in items:
        scope, _, name = key.rpartition(".")
        if scope == "probe":
            probe[name] = value
        elif scope in ("cifar", "imagenet") or (not scope and name in _TRAIN_FIELDS):
            if name not in _TRAIN_FIELDS:
                raise ProfileError(f"--set {key}: {name!r} is not a TrainConfig field "
                                   f"(valid: {', '.join(sorted(_TRAIN_FIELDS))})")
            if name in _SET_BY_HARNESS:
                raise ProfileError(f"--set {key}: {name} is set by the harness (run_dir from the run's hash, "
                                   "threads by the launcher); use --runs-dir / --jobs instead")
            try:
                value = parse_field(name, texts[key], f"--set {key}", text=True)
            except ConfigError as err:
                raise ProfileError(str(err)) from None
            for target in (("cifar", "imagenet") if not scope else (scope,)):
                (cifar if target == "cifar" else imagenet)[name] = value
                explicit[target].add(name)
        elif not scope and name in _PROFILE_FIELDS and name not in _FIXED:
            current = getattr(profile, name)
            if isinstance(current, tuple):
                value = tuple(value if isinstance(value, list) else [value])
            elif isinstance(current, dict):
                if not isinstance(value, dict):
                    raise ProfileError(f"--set {key}: give a JSON object, e.g. --set {name}='{{\"table7\": 2}}'")
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ProfileError(f"--set {key}={value!r}: {name} is true or false")
            elif isinstance(current, (int, float)) and not isinstance(value, (int, float)):
                raise ProfileError(f"--set {key}={value!r}: {name} is a number")
            elif name in _CHOICES and value not in _CHOICES[name]:
                raise ProfileError(f"--set {key}={value!r}: choose one of {', '.join(_CHOICES[name])}")
            if name == "table5_classes":
                check_table5_classes(value, f"--set {key}")
            changes[name] = value
        else:
            valid = sorted(set(_PROFILE_FIELDS) - _FIXED) + ["probe.<key>", "<TrainConfig field>",
                                                              "cifar.<field>", "imagenet.<field>"]
            raise ProfileError(f"--set {key}: unknown setting; valid: {', '.join(valid)}")
    cifar = rescale_schedule(cifar, profile.cifar, explicit["cifar"])[0]
    imagenet = rescale_schedule(imagenet, profile.imagenet, explicit["imagenet"])[0]
    if seeds is not None:
        if seeds < 1:
            raise ProfileError(f"--seeds {seeds}: give at least 1")
        changes["seeds"] = seeds
        changes["table_seeds"] = changes["min_seeds"] = {}  # an explicit seed count applies to every table
    described = tuple(f"{k}={json.dumps(v)}" for k, v in items) + ((f"seeds={seeds}",) if seeds else ())
    new = replace(profile, cifar=cifar, imagenet=imagenet, probe=probe, overrides=profile.overrides + described,
                  **changes)
    for kind, train in (("cifar", new.cifar), ("imagenet", new.imagenet)):
        try:
            TrainConfig.from_dict({k: v for k, v in train.items() if k in _TRAIN_FIELDS}).validate()
        except (ValueError, TypeError) as err:
            if kind == "cifar" or new.imagenet_runs:
                raise ProfileError(f"profile {new.name} with these overrides gives a bad {kind} config: {err}") from err
    return new

