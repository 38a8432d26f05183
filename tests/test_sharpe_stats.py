"""Probabilistic and deflated Sharpe ratios (reports.sharpe_stats): published examples and independent checks.

Published worked examples pinned here (all Sharpe ratios per period, kurtosis raw):

* Bailey and Lopez de Prado (2012), "The Sharpe Ratio Efficient Frontier", J. of Risk 15(2), section 3: a track
  record of T = 24 monthly returns with SR^ = 0.458 per month (1.59 annualised). Under normality
  (skew 0, kurtosis 3) PSR(0) = 0.982; with skew -2.448 and kurtosis 10.164 PSR(0) = 0.913.
* Bailey and Lopez de Prado (2014), "The Deflated Sharpe Ratio", J. of Portfolio Management 40(5), numerical
  example: the best of N = 100 independent trials has an annualised SR of 2.5 over 5 years of daily returns
  (T = 1250, 250 days a year), skew -3, kurtosis 10, and the trials' annualised Sharpe ratios have variance 1/2.
  The paper gets SR0 = 0.1132 (per day) and DSR = 0.9004.
* Standard errors sigma(SR^) = 0.1028 and 0.1550 for T = 134 (SR 0.7079, skew -0.2250, kurtosis 2.9570 and
  SR 0.8183, skew -1.4455, kurtosis 7.0497): the tests of R. Briones' reference implementation
  (github.com/rubenbriones/Probabilistic-Sharpe-Ratio, tests/test_sharpe_ratio_stats.py) attribute them to the
  2012 paper; we could not check that against the PDF, so they are pinned as a secondary check.

The independent checks do not reuse the module's formula: the exact noncentral-t distribution of the sample
Sharpe ratio of normal returns, Monte Carlo calibration, the Monte Carlo variance of the Sharpe estimator for
skewed fat-tailed (gamma) returns, which separates raw from excess kurtosis, and Monte Carlo maxima of normals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import quantstats as qs
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from reports.sharpe_stats import (
    EULER_GAMMA,
    MIN_RETURNS,
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    probabilistic_sharpe_from_moments,
    sharpe_moments,
    sharpe_ratio_variance,
)

# --------------------------------------------------------------------------------------------------------------
# Published worked examples
# --------------------------------------------------------------------------------------------------------------


def test_psr_2012_example_normal_returns() -> None:
    """2012 paper: SR^ = 0.458 monthly, T = 24, normal moments -> PSR(0) = 0.982.

    By hand: variance term 1 - 0 + (3 - 1)/4 * 0.458^2 = 1.104882; z = 0.458 * sqrt(23) / sqrt(1.104882) = 2.0896;
    Phi(2.0896) = 0.98167.
    """
    assert probabilistic_sharpe_from_moments(0.458, 24, 0.0, 3.0) == pytest.approx(0.982, abs=5e-4)
    assert probabilistic_sharpe_from_moments(0.458, 24, 0.0, 3.0) == pytest.approx(0.98167, abs=1e-5)


def test_psr_2012_example_skewed_fat_tailed_returns() -> None:
    """2012 paper: same SR and T with skew -2.448 and kurtosis 10.164 -> PSR(0) = 0.913.

    By hand: 1 + 2.448 * 0.458 + 9.164/4 * 0.458^2 = 1 + 1.121184 + 0.480569 = 2.601753;
    z = 0.458 * sqrt(23) / sqrt(2.601753) = 1.36175; Phi(1.36175) = 0.91336.
    Had the kurtosis been taken as excess (7.164 here) the answer would be 0.920, not the published 0.913.
    """
    psr = probabilistic_sharpe_from_moments(0.458, 24, -2.448, 10.164)
    assert psr == pytest.approx(0.913, abs=5e-4)
    assert psr == pytest.approx(0.91336, abs=1e-5)
    assert probabilistic_sharpe_from_moments(0.458, 24, -2.448, 10.164 - 3.0) == pytest.approx(0.920, abs=5e-4)


@pytest.mark.parametrize(
    ("sr", "skew", "kurtosis", "published"),
    [(0.7079, -0.2250, 2.9570, 0.1028), (0.8183, -1.4455, 7.0497, 0.1550)],
)
def test_sharpe_standard_error_examples(sr: float, skew: float, kurtosis: float, published: float) -> None:
    """sigma(SR^) for T = 134, e.g. sqrt((1 + 0.2250*0.7079 + 1.9570/4*0.7079^2) / 133) = sqrt(1.40445/133)."""
    assert math.sqrt(sharpe_ratio_variance(sr, 134, skew, kurtosis)) == pytest.approx(published, abs=5e-5)


def test_dsr_2014_numerical_example() -> None:
    """2014 paper: N = 100, annualised SR 2.5, T = 1250 days, skew -3, kurtosis 10, V = 1/2 annualised.

    By hand, per day (250 days a year):
      SR^ = 2.5 / sqrt(250) = 0.158114; V = 0.5 / 250 = 0.002, sqrt(V) = 0.044721;
      Phi^-1(1 - 1/100) = 2.326348, Phi^-1(1 - 1/(100 e)) = 2.680210;
      (1 - 0.577216) * 2.326348 + 0.577216 * 2.680210 = 2.530603; SR0 = 0.044721 * 2.530603 = 0.113172
      (1.7894 annualised);
      variance term 1 + 3 * 0.158114 + 9/4 * 0.158114^2 = 1.530592;
      z = (0.158114 - 0.113172) * sqrt(1249) / sqrt(1.530592) = 1.283816; DSR = Phi(1.283816) = 0.900397.
    """
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert sr0 * math.sqrt(250) == pytest.approx(1.7894, abs=5e-5)
    dsr = probabilistic_sharpe_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, benchmark_sr=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_expected_max_sharpe_intermediate_values() -> None:
    """With V = 1 the result is the bracket of the formula alone.

    N = 100: 0.422784 * 2.326348 + 0.577216 * 2.680210 = 2.530603 (as in the DSR example above).
    N = 10: 0.422784 * Phi^-1(0.9) + 0.577216 * Phi^-1(1 - 1/(10 e)) = 0.422784 * 1.281552 + 0.577216 * 1.789242
    = 1.574598; Bailey, Borwein, Lopez de Prado and Zhu (2014, "Pseudo-Mathematics and Financial Charlatanism")
    plot the same approximation, about 1.57 at N = 10.
    """
    assert expected_max_sharpe(100, 1.0) == pytest.approx(2.530603, abs=1e-6)
    assert expected_max_sharpe(10, 1.0) == pytest.approx(1.574598, abs=1e-6)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2.0 * 2.530603, abs=1e-6)
    assert EULER_GAMMA == pytest.approx(0.5772156649, abs=1e-10)


# --------------------------------------------------------------------------------------------------------------
# Independent checks
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [250, 1000, 5000])
@pytest.mark.parametrize("benchmark", [0.0, 0.02, 0.05])
def test_psr_matches_exact_noncentral_t_for_normal_returns(t: int, benchmark: float) -> None:
    """For i.i.d. normal returns sqrt(T) * SR^ (std with ddof=1) is noncentral t with T-1 degrees of freedom and
    noncentrality sqrt(T) * SR, so P[SR^ <= observed | SR = SR*] is known exactly; the PSR approximates it."""
    rng = np.random.default_rng(1000 * t + int(benchmark * 100))
    returns = rng.normal(0.04, 1.0, t)
    m = sharpe_moments(returns)
    exact = stats.nct.cdf(math.sqrt(t) * m.sr, t - 1, math.sqrt(t) * benchmark)
    assert probabilistic_sharpe(returns, benchmark) == pytest.approx(exact, abs=3e-3)


def test_psr_is_calibrated_under_the_null_by_monte_carlo() -> None:
    """With the true Sharpe equal to the benchmark, PSR is roughly uniform: P[PSR > 0.95] ~ 5 %."""
    rng = np.random.default_rng(7)
    true_sr, n_paths, t = 0.05, 2000, 500
    paths = rng.normal(true_sr, 1.0, (n_paths, t))
    psr = np.array([probabilistic_sharpe(p, true_sr) for p in paths])
    assert np.mean(psr > 0.95) == pytest.approx(0.05, abs=0.015)  # binomial s.e. 0.005
    assert np.mean(psr < 0.05) == pytest.approx(0.05, abs=0.015)
    assert np.mean(psr) == pytest.approx(0.5, abs=0.02)


def test_sharpe_variance_needs_raw_kurtosis_by_monte_carlo() -> None:
    """Gamma(0.5) returns (skew 2/sqrt(0.5) = 2.83, raw kurtosis 3 + 6/0.5 = 15) shifted to a true per-period SR
    of 0.4: the simulated variance of SR^ over T = 1000 matches the raw-kurtosis formula and is far (36 %) from
    what excess kurtosis would give."""
    shape, true_sr, t, n_paths = 0.5, 0.4, 1000, 5000
    skew, kurtosis = 2.0 / math.sqrt(shape), 3.0 + 6.0 / shape
    rng = np.random.default_rng(11)
    returns = rng.gamma(shape, 1.0, (n_paths, t)) - (shape - true_sr * math.sqrt(shape))
    simulated = np.var(returns.mean(axis=1) / returns.std(axis=1, ddof=1), ddof=1)
    raw = sharpe_ratio_variance(true_sr, t, skew, kurtosis)
    excess = (1.0 - skew * true_sr + (kurtosis - 3.0 - 1.0) / 4.0 * true_sr**2) / (t - 1)
    assert simulated / raw == pytest.approx(1.0, abs=0.08)
    assert simulated / excess > 1.25


def test_psr_of_returns_uses_raw_kurtosis() -> None:
    """On a skewed fat-tailed sample the module equals the formula with raw kurtosis, not with excess kurtosis."""
    rng = np.random.default_rng(5)
    returns = rng.gamma(0.5, 0.02, 60) - 0.004  # SR^ 0.371, skew 4.65, raw kurtosis 29.7
    benchmark = 0.3
    t = returns.size
    sr = returns.mean() / returns.std(ddof=1)
    skew = stats.skew(returns)
    raw, excess = stats.kurtosis(returns, fisher=False), stats.kurtosis(returns)  # scipy's default is excess

    def by_hand(kurtosis: float) -> float:
        variance_term = 1 - skew * sr + (kurtosis - 1) / 4 * sr**2
        return stats.norm.cdf((sr - benchmark) * math.sqrt(t - 1) / math.sqrt(variance_term))

    psr = probabilistic_sharpe(returns, benchmark)
    assert psr == pytest.approx(by_hand(raw), abs=1e-12)
    assert psr == pytest.approx(0.8566, abs=1e-4)
    assert by_hand(excess) == pytest.approx(0.9146, abs=1e-4)  # what excess kurtosis would have claimed
    assert sharpe_moments(returns).kurtosis == pytest.approx(raw, abs=1e-12)


def test_raw_kurtosis_of_normal_returns_is_three() -> None:
    m = sharpe_moments(np.random.default_rng(5).normal(0.0, 1.0, 200_000))
    assert m.kurtosis == pytest.approx(3.0, abs=0.05)
    assert m.skew == pytest.approx(0.0, abs=0.02)


def test_excess_kurtosis_passed_to_the_low_level_function_is_refused() -> None:
    with pytest.raises(ValueError, match="excess kurtosis"):
        probabilistic_sharpe_from_moments(0.1, 100, 0.0, 0.0)  # normal returns' excess kurtosis
    with pytest.raises(ValueError, match="1 \\+ skew"):
        probabilistic_sharpe_from_moments(0.1, 100, -2.448, 7.164 - 3.0)


@pytest.mark.parametrize("trials", [10, 100, 1000])
def test_expected_max_sharpe_matches_monte_carlo_maxima(trials: int) -> None:
    """The formula approximates E[max of N draws from N(0, V)] to within a few percent."""
    variance = 0.003
    rng = np.random.default_rng(trials)
    maxima = rng.normal(0.0, math.sqrt(variance), (4000, trials)).max(axis=1)
    assert expected_max_sharpe(trials, variance) == pytest.approx(maxima.mean(), rel=0.03)


def test_psr_agrees_with_quantstats_for_a_zero_benchmark() -> None:
    """QuantStats 0.0.86 has PSR against 0 only; on clean data the two agree up to its bias-adjusted moments."""
    returns = pd.Series(np.random.default_rng(0).normal(0.001, 0.01, 2000))
    assert probabilistic_sharpe(returns) == pytest.approx(qs.stats.probabilistic_sharpe_ratio(returns), abs=1e-3)


# --------------------------------------------------------------------------------------------------------------
# Deflation
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def skilled_returns() -> np.ndarray:
    return np.random.default_rng(42).normal(0.12, 1.0, 750)


def test_one_trial_deflates_to_psr_against_zero(skilled_returns: np.ndarray) -> None:
    psr0 = probabilistic_sharpe(skilled_returns, 0.0)
    assert expected_max_sharpe(1, 0.5) == 0.0
    assert deflated_sharpe(skilled_returns, 1) == psr0
    assert deflated_sharpe(skilled_returns, 1, sr_variance=0.5) == psr0


def test_dsr_decreases_as_trials_grow(skilled_returns: np.ndarray) -> None:
    trials = [1, 2, 5, 10, 100, 1_000, 1_000_000]
    dsr = [deflated_sharpe(skilled_returns, n) for n in trials]
    benchmarks = [expected_max_sharpe(n, 1e-3) for n in trials]
    assert all(a > b for a, b in zip(dsr, dsr[1:], strict=False))
    assert all(a < b for a, b in zip(benchmarks, benchmarks[1:], strict=False))
    assert dsr[0] > 0.95 > dsr[-1]


def test_default_sr_variance_is_the_null_estimator_variance(skilled_returns: np.ndarray) -> None:
    """Unknown trial variance defaults to 1/(T-1): the deflated test is 'the t-statistic beats E[max of N]'."""
    t, n = skilled_returns.size, 50
    default = deflated_sharpe(skilled_returns, n)
    assert default == deflated_sharpe(skilled_returns, n, sr_variance=1.0 / (t - 1))
    m = sharpe_moments(skilled_returns)
    z = (m.sr * math.sqrt(t - 1) - expected_max_sharpe(n, 1.0)) / math.sqrt(
        1 - m.skew * m.sr + (m.kurtosis - 1) / 4 * m.sr**2
    )
    assert default == pytest.approx(stats.norm.cdf(z), abs=1e-12)


def test_known_trial_variance_is_used(skilled_returns: np.ndarray) -> None:
    """A wider spread of the trials' Sharpe ratios raises the bar and lowers the DSR."""
    assert deflated_sharpe(skilled_returns, 20, sr_variance=4e-3) < deflated_sharpe(skilled_returns, 20, 1e-3)


# --------------------------------------------------------------------------------------------------------------
# Properties and input errors
# --------------------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    sr=st.floats(-1.0, 1.0),
    t=st.integers(2, 100_000),
    skew=st.floats(-5.0, 5.0),
    extra_kurtosis=st.floats(0.0, 50.0),
    gap=st.floats(1e-4, 0.5),
)
def test_psr_is_a_probability_falling_with_the_benchmark(
    sr: float, t: int, skew: float, extra_kurtosis: float, gap: float
) -> None:
    kurtosis = 1.0 + skew * skew + extra_kurtosis  # Pearson's bound: every real distribution has this
    if 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr < 1e-6:
        return  # two-point degenerate corner, refused by design
    at = probabilistic_sharpe_from_moments(sr, t, skew, kurtosis, benchmark_sr=sr)
    above = probabilistic_sharpe_from_moments(sr, t, skew, kurtosis, benchmark_sr=sr + gap)
    below = probabilistic_sharpe_from_moments(sr, t, skew, kurtosis, benchmark_sr=sr - gap)
    assert at == 0.5
    assert 0.0 <= above <= at <= below <= 1.0


def test_psr_is_scale_free_and_accepts_series_and_lists() -> None:
    """The per-period Sharpe, skew and kurtosis do not change with the units of the returns."""
    returns = np.random.default_rng(9).normal(0.0003, 0.004, 300)
    psr = probabilistic_sharpe(returns, 0.01)
    assert probabilistic_sharpe(returns * 250.0, 0.01) == pytest.approx(psr, abs=1e-12)
    assert probabilistic_sharpe(pd.Series(returns), 0.01) == pytest.approx(psr, abs=1e-15)
    assert probabilistic_sharpe(returns.tolist(), 0.01) == pytest.approx(psr, abs=1e-15)


@pytest.mark.parametrize(
    ("returns", "match"),
    [
        ([0.01, -0.02, 0.03], f"at least {MIN_RETURNS} returns"),
        ([], f"at least {MIN_RETURNS} returns"),
        ([0.01, -0.02, float("nan"), 0.03, 0.0, 0.01], "NaN/inf"),
        ([0.01, -0.02, float("inf"), 0.03, 0.0, 0.01], "NaN/inf"),
        (pd.Series([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]).pct_change(), "NaN/inf"),
        ([0.0] * 50, "zero variance"),
        ([0.001] * 50, "zero variance"),
        (np.ones((10, 2)), "one-dimensional"),
        (["a", "b", "c", "d", "e"], "could not convert"),
    ],
)
def test_bad_returns_raise(returns: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        probabilistic_sharpe(returns)
    with pytest.raises(ValueError, match=match):
        deflated_sharpe(returns, 10)


@pytest.mark.parametrize("trials", [0, -3, 2.5, 10.0, True, "10"])
def test_bad_trials_raise(trials: object) -> None:
    returns = np.random.default_rng(1).normal(0.0, 1.0, 100)
    with pytest.raises(ValueError, match="trials"):
        deflated_sharpe(returns, trials)
    with pytest.raises(ValueError, match="trials"):
        expected_max_sharpe(trials, 0.01)


def test_trials_accept_numpy_integers() -> None:
    assert expected_max_sharpe(np.int64(100), 1.0) == expected_max_sharpe(100, 1.0)


@pytest.mark.parametrize("variance", [-1e-3, float("nan"), float("inf")])
def test_bad_sr_variance_raises(variance: float) -> None:
    with pytest.raises(ValueError, match="sr_variance"):
        expected_max_sharpe(10, variance)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sr": float("nan")}, "sr must be finite"),
        ({"t": 1}, "at least 2"),
        ({"t": 24.0}, "t must be an integer"),
        ({"skew": float("inf")}, "skew must be finite"),
        ({"kurtosis": 0.5}, "excess kurtosis"),
        ({"benchmark_sr": float("nan")}, "benchmark_sr must be finite"),
    ],
)
def test_bad_moments_raise(kwargs: dict[str, float], match: str) -> None:
    args = {"sr": 0.458, "t": 24, "skew": 0.0, "kurtosis": 3.0, "benchmark_sr": 0.0} | kwargs
    with pytest.raises(ValueError, match=match):
        probabilistic_sharpe_from_moments(**args)
