"""What a spec is made of: a grid of cells, each filled by runs (one per seed) or by a reason.

A spec's :meth:`Spec.build` returns a :class:`Grid`: rows x columns of :class:`Cell`, each holding
the paper's number (transcribed once, with the table it comes from) and where our number comes
from: a :class:`Source` (the runs of every seed and how to read a number from a run's record), a
:class:`Derived` cell (the difference of two other cells, seed by seed), a :class:`Const`, or a
:class:`NotRun` with the reason the profile cannot fill it. :mod:`reproduce.render` turns a
resolved grid into markdown/CSV; figure specs also draw it (:mod:`reproduce.plots`).

The run builders at the bottom (:func:`pretrain`, :func:`probe`, ...) are shared by all specs, so
the same method with the same profile is the same run (same hash) in every table: SimCLR and IFND
pre-train once per seed and are probed at every WordNet depth; only SupCon trains per depth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ifnd.config import DETECTORS, MODE_ALIASES, MODES, ConfigError, TrainConfig, mode_settings

from reproduce.paths import DataPaths
from reproduce.profiles import Profile
from reproduce.runs import EvalRun, NotRun, TrainRun
from reproduce.store import Store

PAPER = "Chen et al., Incremental False Negative Detection for Contrastive Learning, ICLR 2022"


# -- cells ---------------------------------------------------------------------------------------
@dataclass
class Source:
    """Our number: one run per seed, and how to read a number from a finished run's record."""

    runs: list
    read: Callable[[dict], float | None]
    alias: str = ""   # e.g. "[c] is the same training as [b] here": claims on this cell read "n/a at this profile"


@dataclass
class Derived:
    """``a - b`` of two cells ``(row, col)``: paired seed by seed when both have the same seeds."""

    a: tuple
    b: tuple


@dataclass
class Const:
    value: float | None
    note: str = ""


@dataclass
class Cell:
    ours: Source | Derived | Const | NotRun | None
    paper: float | None = None
    paper_text: str | None = None   # e.g. "67.1 ± 1.7" when the paper gives more than a number
    fmt: str = "{:.1f}"


@dataclass
class Row:
    key: str
    title: str
    attrs: dict = field(default_factory=dict)


@dataclass
class Col:
    key: str
    title: str


@dataclass
class Claim:
    """A difference the paper claims: ``a - b`` has the sign of ``paper`` (the paper's difference).

    With ``c``: the per-seed ratio ``(a - b) / (c - b)`` in % (the share of the gap from ``b`` to
    ``c`` that ``a`` closes), claimed positive. With ``margin``: ``a`` and ``b`` are close, i.e.
    ``|a - b| < margin`` (an equivalence claim). Verdict rules: :mod:`reproduce.stats`.
    """

    text: str
    a: tuple
    b: tuple
    paper: float | None = None
    c: tuple | None = None
    margin: float | None = None


@dataclass
class Grid:
    name: str
    title: str
    paper_source: str                       # "Table 5" (of the paper); "" for a grid beyond the paper
    paper_file: str = ""                    # where the paper's numbers are transcribed (default: the spec)
    rows: list[Row] = field(default_factory=list)
    cols: list[Col] = field(default_factory=list)
    cells: dict = field(default_factory=dict)  # (row key, col key) -> Cell
    attr_titles: list[str] = field(default_factory=list)  # descriptive columns (row attrs) shown first
    notes: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    trend: Callable | None = None           # (resolved grid) -> [(claim text, stats.Comparison, paper, note)]
    extra_runs: list = field(default_factory=list)  # runs a figure needs that no cell shows

    def add_row(self, key: str, title: str, **attrs) -> Row:
        row = Row(key, title, attrs)
        self.rows.append(row)
        return row

    def add_col(self, key: str, title: str) -> Col:
        col = Col(key, title)
        self.cols.append(col)
        return col

    def set(self, row: str, col: str, ours, paper: float | None = None, **kw) -> Cell:
        cell = Cell(ours, paper, **kw)
        self.cells[(row, col)] = cell
        return cell

    def runs(self) -> list:
        """Every run the grid reads (train runs and evaluations), each once."""
        seen: dict[str, object] = {}

        def add(run) -> None:
            if isinstance(run, EvalRun):
                add(run.train)
            if isinstance(run, (TrainRun, EvalRun)):
                seen.setdefault(run.key, run)

        for cell in self.cells.values():
            if isinstance(cell.ours, Source):
                for run in cell.ours.runs:
                    add(run)
        for run in self.extra_runs:
            add(run)
        return list(seen.values())


@dataclass
class Context:
    profile: Profile
    paths: DataPaths
    store: Store


class Spec:
    """One table or figure of the paper."""

    name = ""
    title = ""
    kind = "table"  # or "figure"
    beyond_paper = False  # an experiment the paper does not report: not in the groups tables / figures

    def build(self, ctx: Context) -> Grid:
        raise NotImplementedError

    def plot(self, ctx: Context, grid: Grid, resolved, path) -> None:
        """Figures draw ``resolved`` (a :class:`reproduce.render.Resolved`) into ``path``."""


# -- methods ---------------------------------------------------------------------------------------
def method(ctx_or_none, name: str) -> dict | NotRun:
    """The TrainConfig fields of a ``--mode`` preset (:func:`ifnd.config.mode_settings`)."""
    if name not in MODES and name not in MODE_ALIASES:
        return NotRun(f"--mode {name} is not a preset of ifnd (known: {', '.join(MODES)})")
    return mode_settings(name)


DATASET_KEYS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet"}


def dataset_fields(dataset: str, profile: Profile) -> dict:
    if dataset == "cifar100":
        return {"dataset": "cifar100", "cluster_numbers": list(profile.cifar100_clusters)}  # App. C, CIFAR-100
    if dataset == "imagenet":
        return {"dataset": "folder"}
    return {"dataset": "cifar10"}


def identity_map(label_map) -> bool:
    return label_map is not None and list(label_map) == list(range(len(label_map)))


_SIZES: dict = {}


def training_size(ctx: Context, data: str = "cifar10") -> int | None:
    """Images a CIFAR pre-training run sees: the profile's subset, else the split's size (None: unknown)."""
    if ctx.profile.cifar.get("train_subset"):
        return int(ctx.profile.cifar["train_subset"])
    path, reason = ctx.paths.locate(DATASET_KEYS.get(data, data))
    if reason or data not in ("cifar10", "cifar100"):
        return None
    if (data, path) not in _SIZES:
        try:
            from ifnd.data import load_split

            _SIZES[(data, path)] = len(load_split(data, "train", path))
        except (ValueError, OSError):
            _SIZES[(data, path)] = None
    return _SIZES[(data, path)]


def pretrain(ctx: Context, fields: dict | NotRun, seed: int, dataset: str = "cifar10", label: str = "",
             label_map=None, **extra) -> TrainRun | NotRun:
    """The pre-training run of ``fields`` (a method's TrainConfig fields) under the profile.

    Without its data set the run is still planned when the store holds its record (committed
    records render without the data), else it is a :class:`NotRun` naming what is missing."""
    if isinstance(fields, NotRun):
        return fields
    _, missing_data = ctx.paths.locate(DATASET_KEYS[dataset])
    kind = "imagenet" if dataset == "imagenet" else "cifar"
    config = {**ctx.profile.train_fields(kind), **dataset_fields(dataset, ctx.profile), **fields, **extra,
              "seed": seed}
    if label_map is not None and not identity_map(label_map):
        config["label_map"] = list(label_map)
    detector = DETECTORS.get(config.get("detector"))
    if detector is not None and "cluster_numbers" in detector.fields and kind == "cifar":
        n = training_size(ctx, dataset)
        if n is not None and max(config["cluster_numbers"]) > n:
            return NotRun(f"cluster numbers {config['cluster_numbers']} exceed the {n} training images: use more "
                          "data or --set cluster_numbers=...")
    config["data_root"] = ctx.paths.data_root(DATASET_KEYS[dataset])
    try:
        cfg = TrainConfig.from_dict(config).validate()
    except (ConfigError, ValueError, TypeError) as err:
        return NotRun(f"config rejected by ifnd: {err}")
    snapshots = ctx.profile.snapshot_epochs(cfg.epochs) if kind == "cifar" else ()
    always = set(ctx.profile.train_fields(kind)) | set(dataset_fields(dataset, ctx.profile)) | {"seed"}  # see reproduce.runs
    run = TrainRun(cfg, frozenset(always), tuple(snapshots), label or f"{cfg.detector}/{cfg.objective} seed {seed}")
    return NotRun(missing_data) if missing_data and not ctx.store.has(run.key) else run


def probe_protocol(ctx: Context) -> str:
    return ctx.profile.probe_protocol


def probe_note(ctx: Context) -> str:
    protocol = probe_protocol(ctx)
    p = ctx.profile
    subset = f"{p.probe_train_subset} training images" if p.probe_train_subset else "the whole training split"
    test = f"{p.eval_test_subset} test images" if p.eval_test_subset else "the whole test split"
    if protocol == "linear":
        s = p.probe
        return (f"Top-1 is a linear probe on frozen backbone features (eval.linear.linear_probe_features: "
                f"{s.get('epochs')} epochs, lr {s.get('lr')}, batch {s.get('batch_size')}, standardised features), "
                f"trained on {subset}, tested on {test}.")
    return (f"Top-1 is a weighted kNN classifier (k={p.cifar.get('knn_k', 200)}, T=0.1) on frozen backbone "
            f"features, memory bank {subset}, tested on {test}.")


def probe(ctx: Context, train: TrainRun | NotRun, dataset: str = "cifar10", label_map=None,
          label: str = "") -> EvalRun | NotRun:
    """Top-1 of a CIFAR checkpoint at a label granularity (``label_map``: original class -> label)."""
    if isinstance(train, NotRun):
        return train
    protocol = probe_protocol(ctx)
    p = ctx.profile
    settings = dict(p.probe) if protocol == "linear" else {"k": p.cifar.get("knn_k", 200)}
    params = {"dataset": dataset, "protocol": protocol, "settings": settings,
              "label_map": None if label_map is None or identity_map(label_map) else list(label_map),
              "train_subset": p.probe_train_subset, "test_subset": p.eval_test_subset}
    return EvalRun("probe", train, params, label or f"probe of {train.label}")


def nmi(ctx: Context, train: TrainRun | NotRun, dataset: str = "cifar10", epoch: int | None = None,
        split: str = "test") -> EvalRun | NotRun:
    """k-means NMI (k = classes) of a checkpoint's features; ``epoch``: a kept snapshot (Figure 6)."""
    if isinstance(train, NotRun):
        return train
    subset = ctx.profile.eval_test_subset if split == "test" else ctx.profile.probe_train_subset
    params = {"dataset": dataset, "split": split, "subset": subset, "k": None, "seeds": ctx.profile.nmi_seeds}
    if epoch is not None:
        params["epoch"] = epoch
    return EvalRun("nmi", train, params, f"NMI of {train.label}" + (f" at epoch {epoch}" if epoch else ""))


def fn_rates(ctx: Context, train: TrainRun | NotRun) -> EvalRun | NotRun:
    """MTPR / MTNR of the run's detector at its final checkpoint, over its training samples."""
    if isinstance(train, NotRun):
        return train
    return EvalRun("fn_rates", train, {"split": "train"}, f"MTPR/MTNR of {train.label}")


def tsne(ctx: Context, train: TrainRun | NotRun, epoch: int | None = None, pseudo: bool = False,
         space: str = "backbone", points: int | None = None) -> EvalRun | NotRun:
    if isinstance(train, NotRun):
        return train
    params = {"epoch": epoch, "pseudo": pseudo, "space": space, "split": "train" if pseudo else "test",
              "points": points or ctx.profile.tsne_points, "perplexity": ctx.profile.tsne_perplexity, "level": 0,
              "iterations": ctx.profile.tsne_iterations}
    return EvalRun("tsne", train, params, f"t-SNE of {train.label}" + (f" at epoch {epoch}" if epoch else ""))


def cli_eval(ctx: Context, train: TrainRun | NotRun, module: str, args: list, machine_args: list,
             label: str, needs: list[str] = ()) -> EvalRun | NotRun:
    """A command-line protocol of ``eval`` on the checkpoint; ``needs`` are data sets it reads."""
    if isinstance(train, NotRun):
        return train
    for key in needs:
        _, reason = ctx.paths.locate(key)
        if reason:
            return NotRun(reason)
    args = list(args) + list(ctx.profile.eval_args.get(module, []))
    return EvalRun("cli", train, {"module": module, "args": args}, label, {"args": list(machine_args)})


# -- reading records -------------------------------------------------------------------------------
def result(key: str) -> Callable[[dict], float | None]:
    def read(record: dict) -> float | None:
        value = record.get("result", {}).get(key)
        return float(value) if isinstance(value, (int, float)) else None

    return read


def last_metric(name: str) -> Callable[[dict], float | None]:
    """The last value of ``name`` logged in a train record's metrics (e.g. ``mtpr_k10``)."""

    def read(record: dict) -> float | None:
        for entry in reversed(record.get("result", {}).get("metrics", [])):
            if isinstance(entry.get(name), (int, float)) and not math.isnan(entry[name]):
                return float(entry[name])
        return None

    return read


def seeds(ctx: Context, spec: str) -> range:
    return range(ctx.profile.seeds_for(spec))


def source(runs: list, read=None) -> Source | NotRun:
    """A Source over one run per seed, or the first NotRun among them."""
    for run in runs:
        if isinstance(run, NotRun):
            return run
    return Source(runs, read or result("top1"))
