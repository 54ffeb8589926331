"""The mixture SPRT of two proportions: its values, its symmetry, and that peeking does not inflate alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lifecycle.sequential import DEFAULT_TAU, msprt_two_proportions, threshold

ALPHA = 0.05


def test_no_data_is_no_evidence() -> None:
    for x1, n1, x2, n2 in ((0, 0, 0, 0), (0, 0, 5, 10), (7, 10, 0, 0), (10, 10, 20, 20), (0, 50, 0, 80)):
        t = msprt_two_proportions(x1, n1, x2, n2)
        assert (t.llr_greater, t.llr_less, t.p_greater, t.p_less) == (0.0, 0.0, 1.0, 1.0)


def test_matches_the_half_normal_mixture_integrated_numerically() -> None:
    from scipy import integrate

    x1, n1, x2, n2, tau = 280, 400, 320, 400, DEFAULT_TAU
    pooled = (x1 + x2) / (n1 + n2)
    v, d = pooled * (1 - pooled) * (1 / n1 + 1 / n2), x2 / n2 - x1 / n1

    def mixture(sign: float) -> float:  # likelihood ratio of theta vs 0 given the observed difference, mixed
        def f(th: float) -> float:
            prior = 2 * math.exp(-th * th / (2 * tau * tau)) / (tau * math.sqrt(2 * math.pi))  # half-normal
            return prior * math.exp(sign * th * d / v - th * th / (2 * v))

        return float(integrate.quad(f, 0, np.inf)[0])

    t = msprt_two_proportions(x1, n1, x2, n2, tau=tau)
    assert t.llr_greater == pytest.approx(math.log(mixture(1.0)), rel=1e-6)
    assert t.llr_less == pytest.approx(math.log(mixture(-1.0)), rel=1e-6)
    assert t.llr_greater == pytest.approx(3.9196, abs=1e-4) and t.p_greater == pytest.approx(0.01985, abs=1e-5)
    assert t.diff == pytest.approx(0.1) and (t.n1, t.n2) == (400, 400)


def test_evidence_grows_with_a_real_difference_and_only_in_its_direction() -> None:
    llrs = [msprt_two_proportions(70 * k, 100 * k, 80 * k, 100 * k) for k in (1, 2, 4, 8, 16)]
    assert all(a.llr_greater < b.llr_greater for a, b in zip(llrs, llrs[1:], strict=False))
    assert llrs[0].p_greater > ALPHA and llrs[-1].p_greater < 1e-6
    assert all(t.p_less == 1.0 for t in llrs)
    assert msprt_two_proportions(0, 1000, 900, 1000).llr_greater > 100  # far tail: no underflow
    assert msprt_two_proportions(900, 1000, 0, 1000).llr_greater < 0


def test_symmetric_in_the_arms_and_in_success_and_failure() -> None:
    for x1, n1, x2, n2 in ((50, 100, 65, 100), (300, 400, 280, 410), (7, 30, 9, 41)):
        t = msprt_two_proportions(x1, n1, x2, n2)
        swapped = msprt_two_proportions(x2, n2, x1, n1)
        flipped = msprt_two_proportions(n1 - x1, n1, n2 - x2, n2)
        assert t.llr_greater == pytest.approx(swapped.llr_less) and t.llr_less == pytest.approx(swapped.llr_greater)
        assert t.llr_greater == pytest.approx(flipped.llr_less) and t.llr_less == pytest.approx(flipped.llr_greater)


def test_inputs_and_alpha_are_checked() -> None:
    with pytest.raises(ValueError, match="within their samples"):
        msprt_two_proportions(5, 4, 1, 2)
    with pytest.raises(ValueError, match="must not be negative"):
        msprt_two_proportions(0, -1, 1, 2)
    with pytest.raises(ValueError, match="tau"):
        msprt_two_proportions(1, 2, 1, 2, tau=0.0)
    with pytest.raises(ValueError, match="alpha"):
        threshold(1.5)
    assert threshold(ALPHA) == pytest.approx(math.log(20))


def test_peeking_at_every_look_keeps_alpha_where_a_repeated_z_test_does_not() -> None:
    """300 A/A sequences (both arms agree 85 %), 24 labels per arm per look, 120 looks, each look judged."""
    rng = np.random.default_rng(16)
    runs, looks, batch = 300, 120, 24
    a = np.cumsum(rng.binomial(batch, 0.85, size=(runs, looks)), axis=1)
    b = np.cumsum(rng.binomial(batch, 0.85, size=(runs, looks)), axis=1)
    bound, zc = threshold(ALPHA), 1.6448536269514722  # one-sided normal quantile at alpha
    msprt_hits = z_hits = 0
    for r in range(runs):
        crossed = peeked = False
        for k in range(looks):
            n, x1, x2 = batch * (k + 1), int(a[r, k]), int(b[r, k])
            crossed = crossed or msprt_two_proportions(x1, n, x2, n).llr_greater >= bound
            pooled = (x1 + x2) / (2 * n)
            se = math.sqrt(pooled * (1 - pooled) * 2 / n)
            peeked = peeked or (se > 0 and (x2 - x1) / n / se > zc)
        msprt_hits += crossed
        z_hits += peeked
    assert msprt_hits / runs <= ALPHA + 0.025, msprt_hits
    assert z_hits / runs > ALPHA + 0.1, z_hits  # the fixed-horizon test, peeked at, is far above its alpha
