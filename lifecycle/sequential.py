"""Anytime-valid comparison of two proportions: the mixture sequential probability ratio test (mSPRT).

A fixed-horizon z-test is valid at one look; checking it at every sensor look and stopping at the
first significant one inflates its false-positive rate far above alpha. The mSPRT of Robbins (1970),
as Johari, Koomen, Pekelis and Walsh use it for A/B tests ("Peeking at A/B tests", KDD 2017; "Always
valid inference: continuous monitoring of A/B tests", Operations Research 2022), integrates the
likelihood ratio of the difference theta = p2 - p1 over a normal mixing distribution N(0, tau^2).
Under H0 the mixture ratio Lambda_n is a non-negative martingale with mean 1, so by Ville's
inequality P(Lambda_n >= 1/alpha at any n) <= alpha: it may be checked after every new label, and
its always-valid p-value is the running minimum of 1/Lambda_n. Lindon, Sanden and Shirikian
("Rapid regression detection in software deployments through sequential testing", KDD 2022) apply
anytime-valid tests of this kind to canary deployments at Netflix.

The data enter through the normal approximation those papers use for binary outcomes: the observed
difference with its variance under H0 (pooled, as the two-proportion z-test):

    V = pbar (1 - pbar) (1/n1 + 1/n2)
    log Lambda = 1/2 log(V / (V + tau^2)) + tau^2 diff^2 / (2 V (V + tau^2))

A decision needs a direction (promote when better, roll back when worse), so each direction gets its
own one-sided test: the mixing distribution is the normal restricted to that side (a half-normal,
density doubled), whose ratio is the two-sided one times 2 Phi(+-tau diff / sqrt(V (V + tau^2))).
Each is a (super)martingale under its own null (theta <= 0, resp. theta >= 0), so each keeps alpha.

`tau` is the scale of the effects the test is tuned to find: DEFAULT_TAU = 0.05 (5 points of
agreement). The statistic is computed from the cumulative counts at each look, with no state kept
between looks: stopping at the first look where Lambda >= 1/alpha is the same decision as stopping
when the running minimum of 1/Lambda first falls below alpha, and that first crossing is what
Ville's inequality bounds. The p-values reported are 1/Lambda at the current look (an upper bound on
the running minimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TAU = 0.05  # standard deviation of the normal mixing distribution: effects around 5 points


def _log_norm_cdf(z: float) -> float:
    """log Phi(z), accurate in the far lower tail (where Phi underflows)."""
    if z > -30.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    # Mills ratio: Phi(z) ~ phi(z) / -z (1 - 1/z^2) for z -> -inf
    return -0.5 * z * z - math.log(-z) - 0.5 * math.log(2 * math.pi) + math.log1p(-1.0 / (z * z))


@dataclass(frozen=True)
class MixtureSPRT:
    """One-sided mSPRT statistics of p2 - p1 on cumulative counts; log-likelihood ratios in nats."""

    p1: float
    p2: float
    n1: int
    n2: int
    tau: float
    llr_greater: float  # log Lambda for p2 > p1
    llr_less: float  # log Lambda for p2 < p1

    @property
    def diff(self) -> float:
        return self.p2 - self.p1

    @property
    def p_greater(self) -> float:
        """Always-valid p-value for p2 > p1 at this look: min(1, 1/Lambda)."""
        return min(1.0, math.exp(-self.llr_greater))

    @property
    def p_less(self) -> float:
        """Always-valid p-value for p2 < p1 at this look: min(1, 1/Lambda)."""
        return min(1.0, math.exp(-self.llr_less))


def threshold(alpha: float) -> float:
    """The log-likelihood ratio a test must reach to reject at `alpha`: log(1/alpha)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) (got {alpha})")
    return -math.log(alpha)


def msprt_two_proportions(x1: int, n1: int, x2: int, n2: int, *, tau: float = DEFAULT_TAU) -> MixtureSPRT:
    """Is x2/n2 greater or less than x1/n1, anytime-valid? With no data (n1 or n2 = 0) both LLRs are 0."""
    if n1 < 0 or n2 < 0:
        raise ValueError(f"sample sizes must not be negative (got n1={n1}, n2={n2})")
    if not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"successes must lie within their samples (got {x1}/{n1}, {x2}/{n2})")
    if tau <= 0:
        raise ValueError(f"tau, the mixing distribution's standard deviation, must be positive (got {tau})")
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    if not n1 or not n2:
        return MixtureSPRT(p1, p2, n1, n2, tau, 0.0, 0.0)
    pooled = (x1 + x2) / (n1 + n2)
    v = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
    if v <= 0.0:  # both arms all successes or all failures: no difference, no evidence
        return MixtureSPRT(p1, p2, n1, n2, tau, 0.0, 0.0)
    diff, t2 = p2 - p1, tau * tau
    two_sided = 0.5 * math.log(v / (v + t2)) + t2 * diff * diff / (2.0 * v * (v + t2))
    z = tau * diff / math.sqrt(v * (v + t2))
    return MixtureSPRT(p1, p2, n1, n2, tau, llr_greater=math.log(2.0) + two_sided + _log_norm_cdf(z),
                       llr_less=math.log(2.0) + two_sided + _log_norm_cdf(-z))
