"""Operating the worker: two in one group, policy hot reload refusing a bad file, models hot-swapped
into a canary, and a Postgres outage mid-stream with nothing lost. Real broker, Postgres, subprocesses."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.simulator import TicketGenerator
from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import free_port, stop_group
from streams.models import in_canary
from tests.streams.conftest import MODEL_NAME, register_champion
from tests.support.stream_helpers import WorkerProcess, count, produce, rows, ticket_bytes, wait_for
from triage import db
from triage.names import TOPIC_RAW
from triage.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

DECISIONS = "SELECT count(*) FROM triage.decisions"


def _tickets(n: int, seed: int) -> list[tuple[bytes | None, bytes]]:
    gen = TicketGenerator(seed=seed)
    return [ticket_bytes(gen.generate().message) for _ in range(n)]


def _decided(metrics: str) -> float:
    return sum(float(m) for m in re.findall(r'^triage_stream_decisions_total\{[^}]*\} ([0-9.e+]+)$', metrics, re.M))


def test_two_workers_share_the_group_and_stop_gracefully(model_db: str, broker: str, tmp_path: Path) -> None:
    a = WorkerProcess(model_db, broker, tmp_path, name="a").start()
    b = WorkerProcess(model_db, broker, tmp_path, name="b").start()
    try:
        # Both must hold partitions of tickets.raw before the load arrives, or one would take it all.
        def split() -> bool:
            parts = [[p for p in w.health()["partitions"] if p.startswith(TOPIC_RAW)] for w in (a, b)]
            return all(parts) and sorted(parts[0] + parts[1]) == [f"{TOPIC_RAW}:{i}" for i in range(4)]

        wait_for(split, 40, "the two workers to split the partitions of tickets.raw")
        produce(broker, TOPIC_RAW, _tickets(600, seed=11))
        wait_for(lambda: count(model_db, DECISIONS) >= 600, 90, "600 decisions")
        assert count(model_db, DECISIONS) == 600
        share_a, share_b = _decided(a.metrics()), _decided(b.metrics())
        assert share_a > 0 and share_b > 0 and share_a + share_b == 600, (share_a, share_b)
        assert b.stop(signal.SIGTERM) == 0, b.log_tail()
        # The survivor takes over b's partitions and decides what b would have.
        produce(broker, TOPIC_RAW, _tickets(200, seed=12))
        wait_for(lambda: count(model_db, DECISIONS) >= 800, 90, "800 decisions after one worker stopped")
        assert count(model_db, DECISIONS) == 800
    finally:
        a.stop()
        b.stop()


def test_policy_hot_reload_refuses_a_bad_file_and_models_hot_swap_to_a_canary(
        model_db: str, broker: str, tmp_path: Path, tiny_model: Path) -> None:
    from ml import registry

    policy = tmp_path / "policy.yaml"
    text = (PROJECT_ROOT / "workspaces" / "bank" / "policy.yaml").read_text()
    policy.write_text(text)
    w = WorkerProcess(model_db, broker, tmp_path, {"TRIAGE_POLICY_PATH": str(policy)}).start()
    try:
        first = w.health()["policy"]["version"]
        bad = text.replace("route: escalate\n", "route: escalate_now\n", 1)
        line = next(i for i, s in enumerate(bad.splitlines(), 1) if "escalate_now" in s)
        policy.write_text(bad)
        err = wait_for(lambda: w.health()["policy"]["error"], 15, "the bad policy to be refused")
        assert f"line {line}:" in err and "route" in err, err
        assert w.health()["policy"]["version"] == first
        assert "triage_stream_policy_reload_errors_total 1.0" in w.metrics()
        produce(broker, TOPIC_RAW, _tickets(50, seed=21))
        wait_for(lambda: count(model_db, DECISIONS) >= 50, 60, "50 decisions under the old policy")
        assert {r[0] for r in rows(model_db, "SELECT DISTINCT policy_version FROM triage.decisions")} == {first}

        # A rule naming an intent that the champion does not know: refused with its line, old policy kept.
        unknown = text.replace("intent: [fraud_report, card_lost_or_stolen]", "intent: [fraud_report, lost_card]", 1)
        line = next(i for i, s in enumerate(unknown.splitlines(), 1) if "lost_card]" in s)
        policy.write_text(unknown)
        err = wait_for(lambda: "lost_card" in (w.health()["policy"]["error"] or "") and w.health()["policy"]["error"],
                       15, "the policy naming an unknown intent to be refused")
        assert f"{policy}: line {line}: rules.1.when.intent.1: unknown intent 'lost_card'" in err, err
        assert "champion model triage-classifier v1 knows: card_arrival" in err and first in err, err
        assert w.health()["policy"]["version"] == first

        # A fixed file with a new version takes over without a restart.
        policy.write_text(text.replace('version: "2026.12.1"', 'version: "2026.11.9"'))
        wait_for(lambda: w.health()["policy"]["version"].startswith("2026.11.9@"), 15, "the fixed policy")
        assert w.health()["policy"]["error"] is None

        # A canary at 50 % appears in the registry: the worker picks it up within seconds.
        v2 = registry.register(model_db, tiny_model, name=MODEL_NAME, status="candidate", changed_by="tests",
                               reason="canary test", models_dir=tmp_path / "models")
        registry.start_deployment(model_db, MODEL_NAME, v2.version, "canary", 50.0, changed_by="tests",
                                  reason="canary test")
        wait_for(lambda: (w.health()["model"]["challenger"] or {}).get("version") == v2.version, 20,
                 "the canary to be loaded")
        produce(broker, TOPIC_RAW, _tickets(200, seed=22))
        wait_for(lambda: count(model_db, DECISIONS) >= 250, 60, "250 decisions")
        late = rows(model_db, "SELECT ticket_id, arm, model_version, challenger IS NULL, challenger_mode IS NULL "
                              "FROM triage.decisions WHERE policy_version LIKE %s", ("2026.11.9@%",))
        assert len(late) == 200
        assert {(r[1], r[2]) for r in late} == {("champion", 1), ("canary", v2.version)}
        # The worker itself puts each ticket in the arm its id hashes to (a random split would fail this),
        # and runs only the acting model on it: nothing of the other model is stored in canary mode.
        assert all((r[1] == "canary") == in_canary(r[0], 50.0) for r in late)
        assert all(r[3] and r[4] for r in late)
        assert 'triage_stream_model_version{name="triage-classifier",role="canary"}' in w.metrics()

        # A ramp raises the share in place: the worker follows it and every new ticket goes to the canary.
        registry.set_percent(model_db, MODEL_NAME, 100.0, changed_by="tests", reason="ramp test")
        wait_for(lambda: (w.health()["model"]["challenger"] or {}).get("percent") == 100.0, 20, "the new share")
        produce(broker, TOPIC_RAW, _tickets(40, seed=23))
        wait_for(lambda: count(model_db, DECISIONS) >= 290, 60, "290 decisions")
        ramped = rows(model_db, "SELECT DISTINCT arm FROM triage.decisions WHERE ticket_id = ANY(%s)",
                      ([json.loads(v)["ticket_id"] for _k, v in _tickets(40, seed=23)],))
        assert ramped == [("canary",)]
    finally:
        w.stop()


@pytest.fixture()
def own_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, so stopping it does not disturb other tests."""
    server = EmbeddedPostgres(tmp_path / "pgdata", free_port(), tmp_path / "postgres.log")
    server.start()
    try:
        yield server
    finally:
        server.stop(discard=True)


def test_postgres_outage_pauses_and_loses_nothing(own_pg: EmbeddedPostgres, broker: str, tiny_model: Path,
                                                  tmp_path: Path) -> None:
    db.ensure_database(own_pg.url(), "triage")
    url = own_pg.url("triage")
    db.migrate(url)
    register_champion(url, tiny_model, tmp_path / "models")
    w = WorkerProcess(url, broker, tmp_path).start()
    try:
        produce(broker, TOPIC_RAW, _tickets(300, seed=31))
        wait_for(lambda: count(url, DECISIONS) > 0, 60, "the first decisions")
        assert own_pg.proc is not None
        stop_group(own_pg.proc.pid, signal.SIGINT)  # fast shutdown: connections are cut mid-stream
        produce(broker, TOPIC_RAW, _tickets(200, seed=32))
        wait_for(lambda: "postgres" in w.health()["dependencies"], 30, "the worker to notice the outage")
        assert "postgres unavailable" in w.health()["status"]
        time.sleep(2)
        own_pg.start()
        wait_for(lambda: count(url, DECISIONS) >= 500, 90, "all 500 decisions after the outage")
        assert count(url, DECISIONS) == 500
        assert count(url, "SELECT count(*) FROM triage.tickets") == 500
        wait_for(lambda: not w.health()["dependencies"], 15, "the worker to report postgres healthy again")
        assert 'triage_stream_retries_total{dependency="postgres"}' in w.metrics()
    finally:
        w.stop()
