"""The statistics behind the Claims sections: paired seeds, t-intervals, verdicts, seed bootstraps.

A claim of the paper is a difference ``A - B`` of two cells whose sign (and size) the paper states.
Each cell holds one number per training seed; seeds are paired by their id, never by position.
On the ``n`` paired differences ``d``:

* mean ``d̄`` and its two-sided 95 % Student t-interval ``d̄ ± t(0.975, n-1) · s / √n``
  (``s`` the sample standard deviation), for n >= 2;
* verdict: ``holds`` when n >= 3 and the interval excludes 0 on the paper's side, ``reversed``
  when it excludes 0 on the other side, ``not resolved`` otherwise; with fewer than 3 pairs
  ``n < 3: not tested`` (with whether the mean's sign agrees with the paper);
* size: where the paper's difference lies relative to the interval (inside it, or ours smaller /
  larger in the paper's direction).

Trend claims (a slope over several columns) get their interval from a bootstrap over training
seeds: seeds are drawn with replacement (the same draw for every column, since seed ``i`` of every
column is one experiment) with a fixed RNG seed, so a re-render gives the same interval.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

LEVEL = 0.95
MIN_N = 3                 # fewer pairs than this: the direction is reported, not tested
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def paired_differences(a: dict, b: dict) -> list[tuple[object, float]]:
    """``[(seed, a[seed] - b[seed])]`` over the seeds both have, in seed order.

    A side given as a plain number (a constant cell, e.g. "MTPR 0 by definition") pairs with
    every seed of the other side.
    """
    if not isinstance(a, dict) and not isinstance(b, dict):
        return [(None, float(a) - float(b))]
    if not isinstance(a, dict):
        return [(s, float(a) - float(v)) for s, v in sorted(b.items())]
    if not isinstance(b, dict):
        return [(s, float(v) - float(b)) for s, v in sorted(a.items())]
    return [(s, float(a[s]) - float(b[s])) for s in sorted(set(a) & set(b))]


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """(mean, lo, hi): the two-sided Student t-interval of the mean; None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def direction_verdict(n: int, mean: float, lo: float | None, hi: float | None, sign: float) -> str:
    """The verdict of a claim ``A - B`` has sign ``sign`` (+1 or -1) from ``n`` paired differences."""
    if n < MIN_N or lo is None or hi is None:
        shown = "none: no difference" if mean == 0 else "agrees" if mean * sign > 0 else "disagrees"
        return f"n < {MIN_N}: not tested (direction {shown})"
    if sign * lo > 0 and sign * hi > 0:
        return "holds"
    if sign * lo < 0 and sign * hi < 0:
        return "reversed"
    return "not resolved"


def size_verdict(paper: float | None, lo: float | None, hi: float | None, sign: float) -> str:
    """Where the paper's difference lies relative to our interval, in the paper's direction."""
    if paper is None or lo is None or hi is None:
        return "-"
    low, high = sorted((sign * lo, sign * hi))
    if sign * paper < low:
        return "ours larger"
    if sign * paper > high:
        return "ours smaller"
    return "paper's inside our interval"


def equivalence_verdict(n: int, mean: float, lo: float | None, hi: float | None, margin: float) -> str:
    """A claim that ``A - B`` is close to 0: holds when the interval lies within ``±margin``."""
    if n < MIN_N or lo is None or hi is None:
        inside = abs(mean) < margin
        return f"n < {MIN_N}: not tested (mean {'inside' if inside else 'outside'} ±{margin:g})"
    if -margin < lo and hi < margin:
        return "holds"
    if lo >= margin or hi <= -margin:
        return "reversed"
    return "not resolved"


@dataclass
class Comparison:
    n: int
    mean: float | None
    lo: float | None
    hi: float | None
    verdict: str
    size: str


def compare(a, b, paper: float | None, direction: float | None = None, margin: float | None = None) -> Comparison:
    """A claim ``A - B``: ``a``/``b`` are ``{seed: value}`` (or a constant); ``direction`` defaults to the
    sign of ``paper`` (+1 when the paper gives no number: the claim says "A above B"); ``margin``
    makes it an equivalence claim (``|A - B| < margin``)."""
    diffs = [d for _, d in paired_differences(a, b)]
    if not diffs:
        return Comparison(0, None, None, None, "pending", "-")
    return judge(diffs, paper, direction, margin)


def judge(diffs: list[float], paper: float | None, direction: float | None = None,
          margin: float | None = None) -> Comparison:
    """The verdict of per-seed statistics ``diffs`` of a claim (differences, ratios)."""
    sign = direction if direction is not None else (1.0 if not paper else math.copysign(1.0, paper))
    n = len(diffs)
    if any(math.isnan(d) for d in diffs):  # e.g. COCO AP of a detector that predicted nothing
        return Comparison(n, None, None, None, "undefined: a cell holds an undefined (NaN) number", "-")
    interval = t_interval(diffs)
    mean, lo, hi = interval if interval else (float(diffs[0]), None, None)
    if margin is not None:
        return Comparison(n, mean, lo, hi, equivalence_verdict(n, mean, lo, hi, margin),
                          size_verdict(paper, lo, hi, 1.0))
    return Comparison(n, mean, lo, hi, direction_verdict(n, mean, lo, hi, sign), size_verdict(paper, lo, hi, sign))


def slope(xs, ys) -> float:
    """Least-squares slope of ``ys`` on ``xs`` (NaN when the xs do not vary)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    x = x - x.mean()
    spread = (x * x).sum()
    return float((x * (y - y.mean())).sum() / spread) if spread > 0 else math.nan


def bootstrap_slope(xs, per_seed: dict, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    level: float = LEVEL) -> tuple[int, float, float | None, float | None]:
    """(n seeds, slope of the seed means, percentile interval) of ``y`` on ``xs`` over training seeds.

    ``per_seed``: ``{seed: [y at each x]}`` (seeds with a value at every x); ``xs``: the x of each
    column, or ``{seed: [x at each column]}`` when x is measured per seed too (drawn with its seed's
    y). One bootstrap draw picks n seeds with replacement and fits the slope of their mean per
    column; the interval is the ``(1 ± level) / 2`` percentiles of the draws (draws whose xs do not
    vary are left out); None for fewer than ``MIN_N`` seeds (two seeds give three distinct resampled
    means: no interval worth the name).
    """
    order = sorted(per_seed)
    rows = np.asarray([per_seed[s] for s in order], dtype=float)
    x_rows = np.asarray([xs[s] for s in order] if isinstance(xs, dict) else [xs] * len(order), dtype=float)
    n = len(rows)
    point = slope(x_rows.mean(axis=0), rows.mean(axis=0))
    if n < MIN_N:
        return n, point, None, None
    gen = np.random.default_rng(seed)
    picks = gen.integers(0, n, size=(resamples, n))
    draws = [slope(x_rows[p].mean(axis=0), rows[p].mean(axis=0)) for p in picks]
    draws = [d for d in draws if not math.isnan(d)]
    if not draws or math.isnan(point):
        return n, point, None, None
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return n, point, float(lo), float(hi)
