"""What a grid costs: image-passes of training and evaluation, and minutes at a profile's throughput.

Training cost: one image-pass is one training image
(its two views, forward and backward); ``mini`` assumes 1,000 image-passes/s (convnet4, bf16
autocast, batched augmentation, 2 free cores); each framework's spec states its cost in two-view
passes (``step_cost``: MoCo v2's key encoder x4/3, SwAV's 2x32 + 4x16 crops x1.5). Evaluation passes are forward-only (feature
extraction for refreshes, kNN, probes, NMI, t-SNE), at ``eval_images_per_second`` (4,000/s);
each linear probe, k-means NMI and t-SNE adds a fixed few seconds. These are estimates to plan a
profile by, not measurements: ``results/<profile>/*.md`` records what a run really took.
"""
from __future__ import annotations

from dataclasses import dataclass

from ifnd.falseneg import DETECTORS
from ifnd.frameworks import FRAMEWORKS

from reproduce.runs import EvalRun, TrainRun

CIFAR_TRAIN, CIFAR_TEST = 50000, 10000
PROBE_SECONDS, NMI_SECONDS, TSNE_SECONDS_PER_1000 = 4.0, 4.0, 8.0
FN_RATES_SECONDS = 4.0  # reading the checkpoint and the labels; a similarity rule adds its O(N^2) pairs


@dataclass
class Cost:
    train_runs: int = 0
    evals: int = 0
    train_image_passes: float = 0.0
    eval_images: float = 0.0
    fixed_seconds: float = 0.0

    def minutes(self, train_rate: float, eval_rate: float) -> float | None:
        if not train_rate or not eval_rate:
            return None
        return (self.train_image_passes / train_rate + self.eval_images / eval_rate + self.fixed_seconds) / 60.0


def train_cost(run: TrainRun) -> tuple[float, float]:
    """(training image-passes, forward-only images) of one pre-training run."""
    c = run.config
    n = c.train_subset or CIFAR_TRAIN
    steps = n // c.batch_size
    passes = steps * c.batch_size * c.epochs * FRAMEWORKS[c.framework].step_cost
    refreshes = len(range(c.refresh_every, c.epochs, c.refresh_every)) if DETECTORS[c.detector].refreshes else 0
    forward = refreshes * n + n + CIFAR_TEST  # refresh features, and the trainer's final kNN
    return passes, forward


def eval_cost(run: EvalRun) -> tuple[float, float]:
    """(forward-only images, fixed seconds) of one evaluation (features are cached per checkpoint,
    so only the first probe of a checkpoint pays for them: counted in :func:`estimate`)."""
    p = run.params
    if run.kind == "probe":
        return 0.0, PROBE_SECONDS
    if run.kind == "nmi":
        return 0.0, NMI_SECONDS
    if run.kind == "fn_rates":  # a detector without labels (GloFND) embeds the training samples
        c = run.train.config
        return (0.0 if DETECTORS[c.detector].label_based else float(c.train_subset or CIFAR_TRAIN)), FN_RATES_SECONDS
    if run.kind == "tsne":
        n = (run.train.config.train_subset or CIFAR_TRAIN) if p.get("pseudo") else CIFAR_TEST
        return float(n), TSNE_SECONDS_PER_1000 * p.get("points", 2000) / 1000.0
    return 0.0, 0.0


def estimate(runs: list) -> Cost:
    cost = Cost()
    features_paid: set = set()
    for run in runs:
        if isinstance(run, TrainRun):
            passes, forward = train_cost(run)
            cost.train_runs += 1
            cost.train_image_passes += passes
            cost.eval_images += forward
        elif isinstance(run, EvalRun):
            cost.evals += 1
            images, seconds = eval_cost(run)
            cost.eval_images += images
            cost.fixed_seconds += seconds
            if run.kind in ("probe", "nmi"):
                p = run.params
                split_sizes = []
                if run.kind == "probe":
                    split_sizes = [("train", p.get("train_subset") or CIFAR_TRAIN),
                                   ("test", p.get("test_subset") or CIFAR_TEST)]
                else:
                    size = p.get("subset") or (CIFAR_TEST if p.get("split") == "test" else CIFAR_TRAIN)
                    split_sizes = [(p.get("split"), size)]
                for split, size in split_sizes:
                    key = (run.train.key, p.get("epoch"), split, size)
                    if key not in features_paid:
                        features_paid.add(key)
                        cost.eval_images += size
    return cost


def describe(cost: Cost, train_rate: float, eval_rate: float) -> str:
    minutes = cost.minutes(train_rate, eval_rate)
    text = (f"{cost.train_runs} pre-training runs ({cost.train_image_passes / 1e6:.2f}M image-passes), "
            f"{cost.evals} evaluations ({cost.eval_images / 1e6:.2f}M forward images, "
            f"{cost.fixed_seconds / 60:.1f} min fixed)")
    if minutes is not None:
        text += (f": about {minutes:.0f} min at {train_rate:.0f} train images/s and {eval_rate:.0f} "
                 "eval images/s")
    return text
