"""Short fault injection for CI: scenarios 1, 3 and 6 of `make chaos` at a size this machine runs in minutes.

Each starts its own embedded PostgreSQL and broker and real worker subprocesses (`.venv-stream`), injects
the fault, and checks input set against output set with the same verifier as `bench/chaos.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import chaos_scenarios as chaos
from tests.support import fuzz as chaos_fuzz
from tests.support.chaos_stack import ScenarioResult

pytestmark = pytest.mark.integration


def _explain(v: ScenarioResult) -> str:
    failed = [k for k, ok in v.details.get("checks", {}).items() if not ok]
    return f"{v.scenario}: failed checks {failed}; details {v.details}"


def test_kill9_twice_nothing_lost_or_doubled(tmp_path: Path) -> None:
    v = chaos.kill_restart(tmp_path, n_tickets=600, kills=2, seed=11, with_actions=False, drain_timeout=150)
    assert v.details["kills"] == 2
    assert v.decisions == 600 and v.dlq == 12, _explain(v)
    assert v.lost == 0 and v.duplicates == 0, _explain(v)
    assert v.passed, _explain(v)


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> ScenarioResult:
    """One run of the short Postgres outage, shared by the tests that read its outcome and the worker's log."""
    return chaos.postgres_outage(tmp_path_factory.mktemp("pg-outage"), n_tickets=400, seed=13, down_s=5.0,
                                 with_actions=False, drain_timeout=150)


def test_postgres_down_5s_nothing_lost_and_logged(outage: ScenarioResult) -> None:
    v = outage
    assert v.lost == 0 and v.duplicates == 0, _explain(v)
    checks = v.details["checks"]
    assert checks["drained"] and checks["nothing_lost"] and checks["no_unexpected_outputs"], _explain(v)
    assert checks["outage_logged"] and checks["recovery_logged"], _explain(v)


def test_postgres_outage_logs_exactly_one_line_each(outage: ScenarioResult) -> None:
    assert outage.details["outage_lines"] == 1 and outage.details["recovery_lines"] == 1, _explain(outage)


@pytest.fixture(scope="module")
def fuzz_report() -> dict[str, Any]:
    return chaos_fuzz.run_decoders(500, seed_=6)


def test_decoders_survive_500_hostile_cases(fuzz_report: dict[str, Any]) -> None:
    report = fuzz_report
    assert report["total"] == 500
    ticket_and_feedback = [c for c in report["crashes"] if c["kind"] != "policy"]
    assert not ticket_and_feedback, ticket_and_feedback
    assert not report["unexplained"], report["unexplained"]


def test_policy_loader_gives_a_clear_error_for_every_bad_file(fuzz_report: dict[str, Any]) -> None:
    assert not fuzz_report["crashes"], fuzz_report["crashes"][:3]


def test_hostile_bytes_through_a_real_worker(tmp_path: Path) -> None:
    v = chaos.fuzz(tmp_path, cases=0, e2e_cases=200, seed=16, drain_timeout=120)
    checks = v.details["checks"]
    assert checks["e2e_nothing_lost"] and checks["e2e_no_strays"] and checks["worker_alive"], _explain(v)
