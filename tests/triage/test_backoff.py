"""The one retry-delay rule: doubling, capped, jittered in the upper half, and safe for long outages."""

from __future__ import annotations

import random

import pytest

from triage.backoff import Backoff, max_delay, retry_delay


def test_the_ceiling_doubles_from_base_until_the_cap() -> None:
    assert [max_delay(n, 0.5, 4.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_the_ceiling_never_falls() -> None:
    ceilings = [max_delay(n, 0.1, 300.0) for n in range(40)]
    assert ceilings == sorted(ceilings)


@pytest.mark.parametrize("retry", range(12))
def test_each_delay_lies_in_the_upper_half_of_its_ceiling(retry: int) -> None:
    rng = random.Random(retry)
    top = max_delay(retry, 0.25, 4.0)
    delays = [retry_delay(retry, 0.25, 4.0, rng) for _ in range(200)]
    assert all(top / 2 <= d <= top for d in delays)
    assert max(delays) - min(delays) > top / 4  # jittered, not one fixed value


def test_a_long_outage_stays_at_the_cap() -> None:
    """Thousands of retries (hours of a Postgres outage) neither overflow nor pass the cap."""
    assert max_delay(5000, 0.1, 5.0) == 5.0
    assert 2.5 <= retry_delay(5000, 0.1, 5.0) <= 5.0


def test_a_negative_retry_names_the_input() -> None:
    with pytest.raises(ValueError, match="got -1"):
        max_delay(-1, 0.1, 5.0)


def test_backoff_counts_retries_and_follows_the_rule() -> None:
    backoff = Backoff(base=0.1, cap=0.4, rng=random.Random(7))
    delays = [backoff.next() for _ in range(5)]
    assert backoff.retries == 5
    for n, d in enumerate(delays):
        assert max_delay(n, 0.1, 0.4) / 2 <= d <= max_delay(n, 0.1, 0.4)
    assert delays[-1] >= 0.2  # capped at 0.4: the last two lie in [0.2, 0.4]
