"""Probabilistic and deflated Sharpe ratios: is a backtest's Sharpe more than luck and selection?

References
----------
* Bailey, D. H. and Lopez de Prado, M. (2012). "The Sharpe Ratio Efficient Frontier". Journal of Risk 15(2).
* Bailey, D. H. and Lopez de Prado, M. (2014). "The Deflated Sharpe Ratio: Correcting for Selection Bias,
  Backtest Overfitting and Non-Normality". Journal of Portfolio Management 40(5), 94-107.

What it computes
----------------
Probabilistic Sharpe ratio (2012): the probability that the true Sharpe ratio exceeds a benchmark ``SR*``,
given the estimate ``SR^`` from ``T`` i.i.d. returns with skewness ``g3`` and kurtosis ``g4``::

    PSR(SR*) = Phi( (SR^ - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR^ + (g4 - 1) / 4 * SR^**2) )

The denominator over ``sqrt(T - 1)`` is the standard error of ``SR^``; for normal returns (g3 = 0, g4 = 3) it is
Lo's (2002) ``sqrt((1 + SR^**2 / 2) / (T - 1))``.

Expected maximum Sharpe ratio (2014) of ``N`` independent trials whose true Sharpe is 0 and whose estimated
Sharpe ratios have variance ``V`` across trials (``gamma`` is Euler-Mascheroni, ``e`` Euler's number)::

    SR0 = sqrt(V) * ( (1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)) )

For ``N = 1`` the formula is undefined (``Phi^-1(0) = -inf``); we define ``SR0 = 0``, the exact expectation of a
single draw from ``N(0, V)``: with one trial there is nothing to select from, so the DSR is the PSR against 0.

Deflated Sharpe ratio (2014): ``DSR = PSR(SR0)``, the PSR against the Sharpe that the best of ``N`` skill-less
trials would show by chance.

Units and conventions (read before use)
---------------------------------------
* **Per-period Sharpe, never annualised.** ``SR^``, ``SR*``, ``SR0`` and ``V`` are all in the sampling frequency
  of the returns (per bar, per day, ...). ``T`` counts those periods, so annualising ``SR^`` while keeping ``T``
  daily multiplies the z-score by ``sqrt(periods)`` and drives every PSR to 1. To compare with an annualised
  figure ``s_a`` from daily data use ``s_a / sqrt(252)``; an annualised variance across trials is ``V * 252``.
* **Kurtosis is raw, not excess.** ``g4`` is the fourth standardised moment, 3 for a normal distribution.
  ``scipy.stats.kurtosis`` and pandas ``Series.kurt()`` return *excess* kurtosis (``fisher=True``, normal = 0) by
  default; passing that in understates the standard error by ``3/4 * SR^**2`` inside the square root. The
  lower-level functions here reject kurtosis below 1 and below ``1 + skew**2`` (impossible for any distribution),
  which catches the excess-kurtosis mistake for near-normal returns.
* **Estimators.** The papers define ``SR = mu / sigma``, ``g3 = E[(r-mu)^3] / sigma^3`` and
  ``g4 = E[(r-mu)^4] / sigma^4`` as population quantities and write their estimates with hats without fixing a
  divisor. We use ``mean / std(ddof=1)`` for ``SR^`` (the usual sample Sharpe ratio, also QuantStats' and the
  reference implementation by R. Briones) and the plug-in (biased, ``bias=True``) moment estimators for ``g3``
  and ``g4``. The ddof choice moves ``SR^`` by a factor ``sqrt((T-1)/T)``, an O(1/T) effect against an O(1/sqrt(T))
  standard error. The plug-in moments are the moments of the empirical distribution, so they always satisfy
  Pearson's inequality ``g4 >= 1 + g3**2``, which makes ``1 - g3*SR + (g4-1)/4*SR**2 >= (1 - g3*SR/2)**2 >= 0``:
  the standard error can never be the square root of a negative number.
* **Excess returns.** Pass returns in excess of the risk-free rate if it matters for the frequency at hand.
* The formulas assume i.i.d. returns; serial correlation makes the standard error too small.

Input errors raise ``ValueError``: non-1-D input, fewer than ``MIN_RETURNS`` returns, NaN or inf values (they are
not dropped: silently changing ``T`` changes the answer, so drop them explicitly if they are expected, such as
the first row of a ``pct_change``), zero variance, and ``trials < 1``. Zero variance (a flat equity curve, or a
constant return) raises rather than returning NaN, 0.5 or 1: the Sharpe ratio is 0/0 or +-inf, so any
probability would be made up, and a NaN would travel silently into reports. A strategy that never traded should
be reported as that.

Why not QuantStats
------------------
QuantStats 0.0.86 (``quantstats/stats.py`` as installed; its sha256 matches the wheel's RECORD) has
``probabilistic_ratio`` / ``probabilistic_sharpe_ratio`` (lines 1297-1401). The two classic errors are *not*
there: line 1337 computes the Sharpe with ``annualize=False`` (per period) and line 1353 converts pandas'
excess kurtosis to raw with ``+ 3``. It still does not fit, and has smaller defects:

* Line 1364, ``psr = _norm.cdf(base / sigma_sr)``, hard-codes the benchmark ``SR* = 0``; there is no parameter
  for it, so it cannot compute a DSR (a PSR against ``SR0``) or a PSR against any other benchmark.
* Line 1355, ``n = len(series)``, counts NaN entries (and +-inf, which ``_prepare_returns`` turns into NaN at
  ``utils.py`` line 730) while the mean, std, skew and kurtosis skip them, so ``T`` is overstated. On 500 normal
  returns with every other one NaN it gives 0.99982 where the correct T = 250 gives 0.99406.
* Lines 1352-1353 use pandas' bias-adjusted estimators (``returns.skew()`` line 1758, ``returns.kurtosis()``
  line 1785). They converge to the plug-in moments, but in short samples they can violate Pearson's inequality
  and make the variance term at lines 1359-1361 negative, and the result NaN.
* A flat series returns NaN silently instead of failing.
* The Sharpe at line 1337 goes through ``_prepare_returns``, which (``utils.py`` lines 720-721) treats a
  series that is all ``>= 0`` with a maximum above 1 as prices and takes ``pct_change``; the skew and kurtosis at
  lines 1352-1353 are computed on the unconverted series, so the two then describe different data.

So this module implements the formulas itself with ``scipy.stats.norm``; for clean data and ``SR* = 0`` it
agrees with QuantStats up to the estimator differences above (checked in the tests).
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "EULER_GAMMA",
    "MIN_RETURNS",
    "SharpeMoments",
    "deflated_sharpe",
    "expected_max_sharpe",
    "probabilistic_sharpe",
    "probabilistic_sharpe_from_moments",
    "sharpe_moments",
    "sharpe_ratio_variance",
]

EULER_GAMMA = float(np.euler_gamma)
# A floor that lets the skewness and kurtosis be computed at all, not a claim that so few returns are enough:
# the formulas are asymptotic and want hundreds of i.i.d. returns to be trusted.
MIN_RETURNS = 5
# A standard deviation this small relative to the largest |return| is rounding noise of a constant series.
_FLAT_RTOL = 1e-10
# Slack for Pearson's inequality g4 >= 1 + g3^2 when the moments come from rounded published figures.
_PEARSON_TOL = 1e-9


class SharpeMoments(NamedTuple):
    """What the PSR needs from a return series: per-period Sharpe, count, skewness and raw kurtosis."""

    sr: float
    t: int
    skew: float
    kurtosis: float


def sharpe_moments(returns: ArrayLike) -> SharpeMoments:
    """Per-period Sharpe ``mean / std(ddof=1)``, ``T``, plug-in skewness and raw (normal = 3) kurtosis.

    Raises ``ValueError`` on input that would make the statistics meaningless instead of returning NaN.
    """
    x = np.asarray(returns, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"returns must be one-dimensional (one series of returns); got shape {x.shape}")
    t = int(x.size)
    if t < MIN_RETURNS:
        raise ValueError(f"need at least {MIN_RETURNS} returns to estimate a Sharpe ratio and its moments; got {t}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(
            f"returns contain {int(bad.sum())} NaN/inf value(s) (first at position {int(np.argmax(bad))}); "
            "they are not dropped silently because that changes T: drop or fix them explicitly"
        )
    std = float(np.std(x, ddof=1))
    if std <= _FLAT_RTOL * float(np.max(np.abs(x))):
        raise ValueError(
            "returns have zero variance (a flat equity curve or a constant return): the Sharpe ratio is 0/0 or "
            "infinite, so no PSR/DSR can be computed; report the strategy as not trading instead"
        )
    sr = float(np.mean(x)) / std
    skew = float(stats.skew(x, bias=True))
    kurtosis = float(stats.kurtosis(x, fisher=False, bias=True))  # raw: fisher=False, normal = 3
    return SharpeMoments(sr=sr, t=t, skew=skew, kurtosis=kurtosis)


def sharpe_ratio_variance(sr: float, t: int, skew: float, kurtosis: float) -> float:
    """Variance of the estimated per-period Sharpe: ``(1 - skew*sr + (kurtosis-1)/4 * sr**2) / (t - 1)``.

    ``kurtosis`` is raw (normal = 3). Values no distribution can have (below 1, or below ``1 + skew**2``) raise,
    because they usually mean excess kurtosis was passed and would silently shrink the standard error.
    """
    sr = _finite("sr", sr)
    skew = _finite("skew", skew)
    kurtosis = _finite("kurtosis", kurtosis)
    t = _integer("t", t)
    if t < 2:
        raise ValueError(f"t (the number of returns) must be at least 2; got {t}")
    if kurtosis < 1.0:
        raise ValueError(
            f"kurtosis must be raw kurtosis (normal = 3), which is never below 1; got {kurtosis}. "
            "Did you pass excess kurtosis (scipy.stats.kurtosis defaults to fisher=True)?"
        )
    bound = 1.0 + skew * skew
    if kurtosis < bound - _PEARSON_TOL * bound:
        raise ValueError(
            f"kurtosis {kurtosis} is below 1 + skew**2 = {bound}, which no distribution allows; "
            "pass raw kurtosis (normal = 3), not excess kurtosis"
        )
    term = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if term <= 0.0:
        raise ValueError(
            f"the Sharpe ratio estimator has zero variance for sr={sr}, skew={skew}, kurtosis={kurtosis} "
            "(a degenerate two-point distribution); the PSR is undefined"
        )
    return term / (t - 1)


def probabilistic_sharpe_from_moments(
    sr: float, t: int, skew: float, kurtosis: float, benchmark_sr: float = 0.0
) -> float:
    """PSR from summary statistics, so published examples can be checked directly.

    ``sr`` and ``benchmark_sr`` are per-period (not annualised) Sharpe ratios, ``t`` the number of returns,
    ``kurtosis`` raw (normal = 3).
    """
    benchmark_sr = _finite("benchmark_sr", benchmark_sr)
    std_error = math.sqrt(sharpe_ratio_variance(sr, t, skew, kurtosis))
    return float(stats.norm.cdf((float(sr) - benchmark_sr) / std_error))


def probabilistic_sharpe(returns: ArrayLike, benchmark_sr: float = 0.0) -> float:
    """Probability that the true per-period Sharpe of ``returns`` exceeds ``benchmark_sr`` (also per period).

    Corrects the plain Sharpe for track-record length, skewness and fat tails (Bailey and Lopez de Prado 2012).
    """
    m = sharpe_moments(returns)
    return probabilistic_sharpe_from_moments(m.sr, m.t, m.skew, m.kurtosis, benchmark_sr)


def expected_max_sharpe(trials: int, sr_variance: float) -> float:
    """Expected best per-period Sharpe among ``trials`` independent skill-less trials (the DSR benchmark).

    ``sr_variance`` is the variance of the trials' estimated per-period Sharpe ratios. One trial gives 0 (the
    mean of a single null draw), so that deflating with ``trials=1`` is the PSR against 0.
    """
    trials = _trials(trials)
    sr_variance = _finite("sr_variance", sr_variance)
    if sr_variance < 0.0:
        raise ValueError(f"sr_variance must be >= 0; got {sr_variance}")
    if trials == 1:
        return 0.0
    # isf(p) = Phi^-1(1 - p) without the rounding of 1 - p for very many trials.
    z = (1.0 - EULER_GAMMA) * stats.norm.isf(1.0 / trials) + EULER_GAMMA * stats.norm.isf(1.0 / (trials * math.e))
    return float(math.sqrt(sr_variance) * z)


def deflated_sharpe(returns: ArrayLike, trials: int, sr_variance: float | None = None) -> float:
    """Probability that the selected strategy's true Sharpe beats the best of ``trials`` lucky ones.

    ``returns`` are those of the strategy that was picked; ``trials`` is how many configurations were tried
    (independent ones; correlated trials count for fewer). ``sr_variance`` is the variance of the per-period
    Sharpe ratios across the trials; pass it whenever the trials' Sharpe ratios are known.

    When it is ``None`` (only the trial count is known) it defaults to ``1 / (T - 1)``: the variance of the
    Sharpe estimator itself under the DSR's null, where every trial has true Sharpe 0 and the trials differ
    only by estimation noise. It is the PSR variance formula at SR = 0, where the skewness and kurtosis terms
    vanish, with the same T - 1 as the PSR (the asymptotic 1/T differs by O(1/T**2)). It is an approximation:
    it assumes the trials share this strategy's length T and have no skill at all. Trials whose true Sharpe
    ratios differ have a larger spread (the benchmark is then too low and the DSR too high); correlated trials
    are fewer in effect (the benchmark is then too high and the DSR too low). Evaluating the variance at the
    winner's own Sharpe instead would let the selected strategy, whose Sharpe the null calls luck, set the bar.
    With this default the DSR is ``Phi((SR^ * sqrt(T-1) - E[max of N standard normals]) / sqrt(1 - g3*SR^ +
    (g4-1)/4*SR^**2))``: the t-statistic must clear the expected maximum of N standard normals.
    """
    trials = _trials(trials)
    m = sharpe_moments(returns)
    variance = 1.0 / (m.t - 1) if sr_variance is None else sr_variance
    benchmark = expected_max_sharpe(trials, variance)
    return probabilistic_sharpe_from_moments(m.sr, m.t, m.skew, m.kurtosis, benchmark)


def _finite(name: str, value: float) -> float:
    """A finite float, or a ValueError naming the argument (NaN would otherwise pass every comparison)."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number; got {value!r}") from exc
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite; got {out}")
    return out


def _integer(name: str, value: int) -> int:
    """An integer (numpy integers included; floats and bools refused so that 10.5 trials is an error)."""
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    try:
        return operator.index(value)
    except TypeError as exc:
        raise ValueError(f"{name} must be an integer; got {value!r}") from exc


def _trials(trials: int) -> int:
    """Number of trials as an int >= 1: zero trials select nothing, so there is nothing to deflate."""
    n = _integer("trials", trials)
    if n < 1:
        raise ValueError(f"trials must be >= 1 (the configurations tried, the selected one included); got {n}")
    return n
