"""Detection quality vs gain (beyond the paper): Top-1 gain over SimCLR against MTPR and MTNR
(``make detection-quality``).

Rows, all SimCLR-based on CIFAR-10 at every profile:

* the true labels with ``RATES`` of the training samples given a wrong class, accepted under IFND's
  schedule and removed by IFND's elimination (``--detector scheduled_labels``,
  :mod:`ifnd.falseneg.scheduled`): IFND with its k-means replaced by labels of a known quality, so
  only the quality differs. On CIFAR-10, 90 % corrupted leaves every label uniform over the 10
  classes: random labels;
* IFND, GloFND and PCL with their own detection, and SimCLR, the baseline of every gain.

Columns: MTPR and MTNR of each run's final detection over its training samples (label detectors:
the trainer's numbers at their last refresh, first level: IFND's k = 10 as in Table 6, PCL's first
cluster number; GloFND: its thresholds on the training samples' projections, measured on the final
checkpoint by :mod:`eval.false_negatives`), Top-1 (the linear probe of Table 5) and the gain, Top-1
minus SimCLR's, paired by seed.

Runs shared with the paper's tables train once: SimCLR and IFND are Table 5's CIFAR-10 runs, PCL
is Table 4's stand-in run. Seeds: the profile's, at least ``Profile.min_seeds`` (3 at ``mini``,
``cifar`` and ``paper``) so the claims can be tested. GloFND starts removing at its authors' fraction
of training (70 of 200 epochs) unless the profile sets ``glofnd_start_epoch``.
"""
from __future__ import annotations

import math

from ifnd.falseneg import DETECTORS

from reproduce import plots, stats
from reproduce.runs import NotRun, TrainRun
from reproduce.specs.base import (Claim, Const, Context, Derived, Grid, Spec, fn_rates, last_metric, method, pretrain,
                                  probe, probe_note, result, seeds, source)
from reproduce.specs.table4 import standin_run

NAME = "detection_quality"
DATA = "cifar10"
RATES = (0.0, 0.45, 0.9)  # fractions of corrupted labels: perfect, halfway, random (on 10 classes); three rates
                          # x 3 seeds keep the figure within mini's 45 minutes
GLOFND_START = 70 / 200       # GloFND's start epoch as a fraction of its authors' 200 epochs
METHODS = {  # key: (title, detection, removal)
    "ifnd": ("IFND", "k-means pseudo labels accepted by confidence (Eq. 2)", "elimination (Eq. 3)"),
    "glofnd": ("GloFND", "a learned similarity threshold per sample", "elimination, kept negatives rescaled"),
    "pcl": ("PCL", "k-means prototypes (step schedule)", "none: prototype term (ProtoNCE)"),
}


def rate_key(rate: float) -> str:
    return f"c{round(rate * 100)}"


def rate_title(rate: float) -> str:
    return f"true labels, {rate:.0%} corrupted" + (" (random)" if math.isclose(rate, 0.9) else "")


def glofnd_fields(ctx: Context) -> dict | NotRun:
    fields = method(ctx, "glofnd")
    if isinstance(fields, NotRun) or "glofnd_start_epoch" in ctx.profile.cifar:
        return fields
    epochs = int(ctx.profile.cifar["epochs"])
    return {**fields, "glofnd_start_epoch": min(epochs - 1, round(GLOFND_START * epochs))}


def train_run(ctx: Context, key: str, seed: int):
    """The pre-training run of a row (``simclr``, a method of ``METHODS`` or ``rate_key(rate)``) and seed."""
    if key == "pcl":
        return standin_run(ctx, "pcl", seed)  # Table 4's stand-in: Table 7's PCL row on CIFAR-10
    if key in ("simclr", "ifnd"):
        return pretrain(ctx, method(ctx, key), seed, DATA, label=f"{key} seed {seed}")
    if key == "glofnd":
        return pretrain(ctx, glofnd_fields(ctx), seed, DATA, label=f"GloFND seed {seed}")
    rate = next(r for r in RATES if rate_key(r) == key)
    return pretrain(ctx, {"detector": "scheduled_labels", "objective": "elimination", "label_corruption": rate},
                    seed, DATA, label=f"{rate_title(rate)} seed {seed}")


def rate_cells(ctx: Context, trains: list) -> dict:
    """A row's MTPR and MTNR cells: a label detector that refreshes logs them at each refresh (its labels at the
    first level; the last refresh's are the final ones: no checkpoint needed, so shared runs are not trained
    again); any other detector (GloFND) is measured on its final checkpoint (``fn_rates``)."""
    first = next((t for t in trains if isinstance(t, TrainRun)), None)
    if first is None:
        return {"mtpr": source(trains), "mtnr": source(trains)}  # the runs' reason (NotRun)
    detector = DETECTORS[first.config.detector]
    if detector.label_based and detector.refreshes:
        k = first.config.cluster_numbers[0]  # the trainer names the first level after it
        return {col: source(trains, last_metric(f"{col}_k{k}")) for col in ("mtpr", "mtnr")}
    evals = [fn_rates(ctx, t) for t in trains]
    return {col: source(evals, result(col)) for col in ("mtpr", "mtnr")}


def gain_trends(resolved) -> list[tuple[str, stats.Comparison, float | None, str]]:
    """Does the gain grow with MTPR, and with MTNR, across the corrupted-label rows? (slope per 10 points)."""
    rows = []
    for col, name in (("mtpr", "MTPR"), ("mtnr", "MTNR")):
        text = (f"Top-1 gain grows with {name} (the {len(RATES)} corrupted-label rows; beyond the paper): slope, "
                f"points of gain per 10 points of {name} (interval: bootstrap over training seeds, "
                f"{stats.BOOTSTRAP_RESAMPLES} resamples, RNG seed {stats.BOOTSTRAP_SEED})")
        cells = [(resolved.value(rate_key(r), col), resolved.value(rate_key(r), "gain")) for r in RATES]
        values = [v for pair in cells for v in pair]
        common = set.intersection(*(set(v.by_seed) for v in values))
        if any(v.status == "not run" for v in values):
            verdict = "not run"
        elif not common or any(v.status != "ok" for v in values):
            verdict = "pending"
        else:
            order = sorted(common)
            n, point, lo, hi = stats.bootstrap_slope({s: [x.by_seed[s] for x, _ in cells] for s in order},
                                                     {s: [y.by_seed[s] for _, y in cells] for s in order})
            if math.isnan(point):
                verdict = f"not resolved ({name} is the same at every rate)"
            else:
                scaled = [None if v is None else 10 * v for v in (lo, hi)]
                comparison = stats.Comparison(n, 10 * point, *scaled,
                                              stats.direction_verdict(n, point, lo, hi, 1.0), "-")
                rows.append((text, comparison, None, ""))
                continue
        rows.append((text, stats.Comparison(0, None, None, None, verdict, "-"), None, ""))
    return rows


class DetectionQuality(Spec):
    name = NAME
    title = "Detection quality vs gain: Top-1 gain over SimCLR against MTPR and MTNR"
    kind = "figure"
    beyond_paper = True

    def build(self, ctx: Context) -> Grid:
        grid = Grid(self.name, f"{self.title} (CIFAR-10; beyond the paper)", "")
        grid.attr_titles = ["Detection", "Removal"]
        for col, title in (("mtpr", "MTPR"), ("mtnr", "MTNR"), ("top1", "Top-1"), ("gain", "Gain over SimCLR")):
            grid.add_col(col, title)
        rows = [("simclr", "SimCLR", "none", "none (Eq. 1)")]
        rows += [(rate_key(r), rate_title(r), "the true labels accepted under IFND's schedule", "elimination (Eq. 3)")
                 for r in RATES]
        rows += [(key, *texts) for key, texts in METHODS.items()]
        n = seeds(ctx, self.name)
        for key, title, detection, removal in rows:
            grid.add_row(key, title, Detection=detection, Removal=removal)
            trains = [train_run(ctx, key, seed) for seed in n]
            if key == "simclr":
                note = "by definition: instance-level learning detects no false negative"
                grid.set(key, "mtpr", Const(0.0, note))
                grid.set(key, "mtnr", Const(100.0, note))
            else:
                for col, cell in rate_cells(ctx, trains).items():
                    grid.set(key, col, cell)
                grid.set(key, "gain", Derived((key, "top1"), ("simclr", "top1")), fmt="{:.2f}")
            grid.set(key, "top1", source([probe(ctx, t, DATA, label=f"{title} probe") for t in trains]))
        perfect, random_ = rate_key(RATES[0]), rate_key(RATES[-1])
        grid.claims += [
            Claim("Top-1: perfect labels under IFND's schedule (0 % corrupted) beat SimCLR: removing true false "
                  "negatives helps", (perfect, "top1"), ("simclr", "top1")),
            Claim("Top-1: perfect labels under IFND's schedule beat IFND: IFND's detection leaves gain unused",
                  (perfect, "top1"), ("ifnd", "top1")),
            Claim(f"Top-1: IFND beats {rate_title(RATES[-1])}: its detection is worth more than chance",
                  ("ifnd", "top1"), (random_, "top1")),
        ]
        grid.trend = gain_trends
        p = ctx.profile
        grid.notes += [
            "Beyond the paper: the paper has no such experiment, so no cell has a paper number.",
            f"Seeds: n = {len(n)} training seeds per row (Profile.min_seeds: at least 3, so the claims can be "
            f"tested; the profile's other tables use {p.seeds_for('table5')}).",
            "Corrupted rows: IFND with its k-means pseudo labels replaced by the true labels, of which the given "
            "fraction of training samples carry a wrong class drawn uniformly (seeded by the run's seed); the "
            "accepted fraction follows IFND's schedule in a random order fixed per run (--detector "
            "scheduled_labels). On 10 classes, 90 % corrupted makes every label independent of the class.",
            "MTPR / MTNR: each run's final detection over its training samples, against CIFAR-10's classes: "
            "label detectors as the trainer logs them at their last refresh, first level (IFND's k = 10, Table "
            "6's number; PCL's first cluster number; the corrupted labels as last accepted); GloFND's per-sample "
            "thresholds on the projections of the training images at its final checkpoint (eval.false_negatives). "
            "PCL removes no negative (its pseudo labels feed its prototype term).",
            "Shared runs: SimCLR and IFND are Table 5's CIFAR-10 runs, PCL Table 4's stand-in run (same keys); "
            f"GloFND starts removing at {GLOFND_START:.0%} of training (its authors' 70 of 200 epochs) unless the "
            "profile sets glofnd_start_epoch.",
            "Gain: Top-1 minus SimCLR's, per training seed, then averaged; the trend claims fit the gain against "
            "the measured MTPR (MTNR) of the corrupted rows, both averaged over the resampled seeds.",
            probe_note(ctx),
        ]
        return grid

    def plot(self, ctx, grid, resolved, path) -> None:
        def point(row: str, col: str):
            x, y = resolved.value(row, col), resolved.value(row, "gain")
            return x.mean, x.std, y.mean, y.std

        panels = []
        for col, name in (("mtpr", "MTPR"), ("mtnr", "MTNR")):
            curve = [(*point(rate_key(r), col), f"{r:.0%}") for r in RATES]
            methods = [(METHODS[key][0], *point(key, col)) for key in METHODS]
            panels.append({"title": f"Top-1 gain over SimCLR against {name}", "xlabel": f"{name} (%) at the end of "
                           "training", "ylabel": "Top-1 gain over SimCLR (points)",
                           "curve": ("true labels under IFND's schedule (% corrupted)", curve), "points": methods,
                           "hline": (0.0, "SimCLR (no detection)")})
        n = len(seeds(ctx, self.name))
        plots.scatter_panels(path, panels, f"{self.title} (CIFAR-10, {ctx.profile.name}; beyond the paper)",
                             f"Mean over n = {n} training seeds; error bars: std over seeds in both directions. "
                             "Red: IFND's elimination with the true labels, the labelled fraction corrupted; "
                             "other points: each method's own detection.")
