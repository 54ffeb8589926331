"""`triage up` end to end on the embedded defaults (without Airflow, which `make up` adds):
every part healthy, the simulator's tickets on tickets.raw and decided, a twin refused, and
`triage down` leaving no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import free_port, pid_alive
from apps.stack.supervisor import state_for
from triage import db
from triage.names import TOPIC_RAW
from triage.settings import PROJECT_ROOT, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TRIAGE = str(Path(sys.executable).parent / "triage")


def _seed_champion(settings, model_dir: Path) -> None:
    """Register a small champion so `up` does not spend minutes training the out-of-box model."""
    from ml import registry

    pg = EmbeddedPostgres(settings.pg_data_dir, settings.pg_port, settings.state_dir / "seed-pg.log")
    pg.start()
    try:
        db.ensure_database(pg.url(), "triage")
        db.migrate(settings.db_url())
        registry.register(
            settings.db_url(),
            model_dir,
            name=settings.model_name,
            status="champion",
            changed_by="tests",
            reason="stack test",
            models_dir=settings.models_dir,
        )
    finally:
        pg.stop()


async def _count_raw(bootstrap: str, timeout: float) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        TOPIC_RAW, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id="stack-test"
    )
    await consumer.start()
    try:
        seen = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and seen < 10:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                seen += sum(1 for m in messages if json.loads(m.value)["ticket_id"].startswith("T-"))
        return seen
    finally:
        await consumer.stop()


def test_up_status_down(tmp_path: Path, tiny_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIAGE_", "DATABASE_URL", "KAFKA_"))}
    env.update(
        {
            "TRIAGE_STATE_DIR": str(tmp_path / "state"),
            "TRIAGE_KAFKA_PORT": str(free_port()),
            "TRIAGE_WORKER_PORT": str(free_port()),
            "TRIAGE_PG_PORT": str(free_port()),
            "TRIAGE_LLM_PORT": str(free_port()),
            "TRIAGE_CONSOLE_PORT": str(free_port()),
            "TRIAGE_SIMULATOR_RATE": "20",
        }
    )
    settings = load_settings({k: v for k, v in env.items() if k.startswith("TRIAGE_")})
    _seed_champion(settings, tiny_model)

    log = open(tmp_path / "up.log", "w")  # noqa: SIM115 - the stack outlives this block
    up = subprocess.Popen(
        [TRIAGE, "up", "--no-airflow"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
    )
    state = state_for(settings)
    try:
        deadline = time.monotonic() + 240
        while "All parts healthy" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(1)
        status = subprocess.run([TRIAGE, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "worker     healthy" in status.stdout
        assert "drafting   healthy" in status.stdout and "breakers:" in status.stdout
        assert "console    healthy" in status.stdout
        assert f"console    ready   http://127.0.0.1:{env['TRIAGE_CONSOLE_PORT']}" in (tmp_path / "up.log").read_text()

        twin = subprocess.run([TRIAGE, "up", "--no-airflow"], env=env, capture_output=True, text=True, timeout=60)
        assert twin.returncode == 1 and "already running" in twin.stderr

        assert asyncio.run(_count_raw(settings.bootstrap_servers, 30)) >= 10
        decided = 0
        for _ in range(60):
            with db.connect(settings.db_url()) as conn:
                decided = conn.execute("SELECT count(*) AS n FROM triage.decisions").fetchone()["n"]
            if decided >= 10:
                break
            time.sleep(1)
        assert decided >= 10
        parts = state.read()["parts"]
        assert set(parts) >= {"postgres", "kafka", "worker", "drafting", "console", "simulator"}
    finally:
        down = subprocess.run([TRIAGE, "down"], env=env, capture_output=True, text=True, timeout=180)
        up.wait(timeout=60)
        log.close()
        EmbeddedPostgres(settings.pg_data_dir, settings.pg_port, tmp_path / "unused.log").discard()
    assert down.returncode == 0, down.stderr
    time.sleep(0.5)
    left = [name for name, part in parts.items() if pid_alive(int(part["pid"]))]
    assert left == [], f"processes left behind: {left}"
    assert not state.path.exists()
