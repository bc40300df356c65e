"""The verdict rules of the Claims sections on synthetic inputs with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from reproduce import stats


def test_seeds_pair_by_id_not_by_position():
    a = {0: 10.0, 1: 11.0, 2: 12.0}
    b = {2: 2.0, 0: 0.0, 5: 50.0}            # seed 1 missing, seed 5 extra, order shuffled
    assert stats.paired_differences(a, b) == [(0, 10.0), (2, 10.0)]
    assert stats.paired_differences(a, 1.0) == [(0, 9.0), (1, 10.0), (2, 11.0)]  # a constant pairs with every seed
    assert stats.paired_differences(3.0, {4: 1.0}) == [(4, 2.0)]


def test_t_interval_matches_closed_form_and_scipy():
    values = [1.0, 2.0, 3.0]                 # mean 2, s = 1, t(0.975, 2) = 4.3026527297 (tables)
    mean, lo, hi = stats.t_interval(values)
    half = 4.3026527297 / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((2.0, 2.0 - half, 2.0 + half), abs=1e-9)
    rng = np.random.default_rng(1)
    sample = list(rng.normal(0.3, 1.0, size=7))
    expected = st.t.interval(0.95, len(sample) - 1, loc=np.mean(sample), scale=st.sem(sample))
    assert stats.t_interval(sample)[1:] == pytest.approx(expected, abs=1e-12)
    assert stats.t_interval([4.0]) is None


def test_direction_verdicts():
    holds = stats.compare({0: 2.1, 1: 2.0, 2: 2.2}, {0: 0.0, 1: 0.1, 2: 0.0}, paper=2.5)
    assert holds.verdict == "holds" and holds.n == 3 and holds.lo > 0
    reversed_ = stats.compare({0: 0.0, 1: 0.1, 2: 0.0}, {0: 2.1, 1: 2.0, 2: 2.2}, paper=2.5)
    assert reversed_.verdict == "reversed"
    # A negative paper difference: the claim's direction is "A below B".
    assert stats.compare({0: 0.0, 1: 0.1, 2: 0.0}, {0: 2.1, 1: 2.0, 2: 2.2}, paper=-1.0).verdict == "holds"
    wide = stats.compare({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0}, paper=1.0)
    assert wide.verdict == "not resolved" and wide.lo < 0 < wide.hi
    # No paper number: the claim says "A above B".
    assert stats.compare({0: 1.0, 1: 1.1, 2: 1.2}, {0: 0, 1: 0, 2: 0}, paper=None).verdict == "holds"


def test_fewer_than_three_pairs_are_not_tested_whatever_the_gap():
    two = stats.compare({0: 10.0, 1: 10.1}, {0: 0.0, 1: 0.0}, paper=1.0)
    assert two.verdict == "n < 3: not tested (direction agrees)" and two.lo is not None  # interval still shown
    one = stats.compare({0: 1.0}, {0: 2.0}, paper=1.0)
    assert one.verdict == "n < 3: not tested (direction disagrees)" and one.lo is None and one.size == "-"
    zero = stats.compare({0: -0.04}, {0: -0.04}, paper=None)  # our difference 0 never agrees with "A above B"
    assert zero.verdict == "n < 3: not tested (direction none: no difference)"
    assert stats.compare({0: 1.0}, {1: 1.0}, paper=1.0).verdict == "pending"  # no common seed


def test_an_undefined_cell_makes_an_undefined_claim():
    from reproduce.render import num

    nan = stats.compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: math.nan, 1: 0.0, 2: 0.0}, paper=1.0)
    assert nan.verdict.startswith("undefined") and nan.mean is None and nan.size == "-"
    assert num(math.nan) == "undefined" and num(-0.004, signed=True) == "0.00"


def test_size_verdicts():
    assert stats.size_verdict(2.5, 1.0, 3.0, 1.0) == "paper's inside our interval"
    assert stats.size_verdict(2.5, 0.1, 0.5, 1.0) == "ours smaller"
    assert stats.size_verdict(0.8, 4.0, 6.0, 1.0) == "ours larger"     # Table 5's "SupCon above IFND" at mini
    assert stats.size_verdict(-6.4, -3.0, -2.0, -1.0) == "ours smaller"  # negative direction: smaller in magnitude
    assert stats.size_verdict(-1.0, -3.0, -2.0, -1.0) == "ours larger"
    assert stats.size_verdict(None, 1.0, 2.0, 1.0) == "-"


def test_equivalence_claims():
    close = stats.compare({0: 70.0, 1: 70.1, 2: 70.2}, {0: 70.1, 1: 70.1, 2: 70.1}, paper=-0.3, margin=1.0)
    assert close.verdict == "holds"
    far = stats.compare({0: 75.0, 1: 75.1, 2: 75.2}, {0: 70.1, 1: 70.1, 2: 70.1}, paper=-0.3, margin=1.0)
    assert far.verdict == "reversed"
    assert stats.compare({0: 70.0}, {0: 70.5}, paper=-0.3, margin=1.0).verdict.startswith("n < 3: not tested (mean "
                                                                                          "inside")


def test_slope_and_seed_bootstrap():
    xs = [1.0, 2.0, 3.0, 4.0]
    assert stats.slope(xs, [3.0, 5.0, 7.0, 9.0]) == pytest.approx(2.0)
    assert stats.slope(xs, [1.0, 0.0, 2.0, 1.0]) == pytest.approx(st.linregress(xs, [1.0, 0.0, 2.0, 1.0]).slope)
    # Every seed has the same slope -2 (different offsets): every resample has slope -2.
    per_seed = {0: [0.0, -2.0, -4.0, -6.0], 1: [1.0, -1.0, -3.0, -5.0], 2: [5.0, 3.0, 1.0, -1.0]}
    n, point, lo, hi = stats.bootstrap_slope(xs, per_seed)
    assert n == 3 and point == pytest.approx(-2.0) and lo == pytest.approx(-2.0) and hi == pytest.approx(-2.0)
    # Seeds with slopes -1 and -3: every resample's slope lies in [-3, -1], the interval inside it, and
    # the same RNG seed gives the same interval.
    per_seed = {0: [0.0, -1.0, -2.0, -3.0], 1: [0.0, -3.0, -6.0, -9.0], 2: [0.0, -2.0, -4.0, -6.0]}
    first = stats.bootstrap_slope(xs, per_seed)
    assert -3.0 <= first[2] < first[3] <= -1.0 and first == stats.bootstrap_slope(xs, per_seed)
    two = stats.bootstrap_slope(xs, {0: [0.0, 1.0, 2.0, 3.0], 1: [0.0, 3.0, 6.0, 9.0]})
    assert two[:2] == (2, pytest.approx(2.0)) and two[2:] == (None, None)  # 2 seeds: a point, no interval
