"""Dead letters hold nothing raw: the real worker, broker and Postgres, then `triage dlq` in-process.

A dead letter's row and its DLQ message carry the masked text only; the exact bytes are kept encrypted
until the retention ends, `triage dlq replay` puts them back on the source topic, and the purge (at
worker startup and from the CLI) drops them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from apps.cli import main
from tests.support.stream_helpers import WorkerProcess, count, produce, read_values, rows, wait_for
from triage.names import TOPIC_DLQ, TOPIC_RAW
from triage.settings import get_settings

pytestmark = pytest.mark.integration

CARD, EMAIL = "4111 1111 1111 1111", "anna.schmidt@example.org"
SECRETS = (CARD, EMAIL, "4111111111111111", "anna.schmidt")
KEY = Fernet.generate_key().decode()
OVERSIZE = json.dumps({"ticket_id": "T-big", "channel": "email", "received_at": "2026-11-24T08:00:00+00:00",
                       "body": f"My card {CARD} was charged twice, write to {EMAIL}. " + "More. " * 40}).encode()
INVALID = json.dumps({"ticket_id": "T-fax", "channel": "fax", "received_at": "2026-11-24T08:00:00+00:00",
                      "body": f"card {CARD}, mail {EMAIL}", "metadata": {"reply_to": EMAIL}}).encode()


@pytest.fixture()
def cli_env(model_db: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI pointed at the test's database, broker, state folder and key."""
    for name, value in {"DATABASE_URL": model_db, "KAFKA_BOOTSTRAP_SERVERS": broker, "TRIAGE_DLQ_KEY": KEY,
                        "TRIAGE_STATE_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _id(url: str, reason_kind: str) -> int:
    return int(rows(url, "SELECT min(id) FROM triage.dead_letters WHERE reason LIKE %s", (f"{reason_kind}:%",))[0][0])


def _token(url: str, i: int) -> bytes | None:
    return rows(url, "SELECT original_encrypted FROM triage.dead_letters WHERE id = %s", (i,))[0][0]


def _expire(url: str, i: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE triage.dead_letters SET purge_after = now() - interval '1 day' WHERE id = %s", (i,))


def test_dead_letters_keep_nothing_raw_and_replay_the_exact_bytes(
        model_db: str, broker: str, tmp_path: Path, cli_env: None, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TRIAGE_DLQ_KEY": KEY, "TRIAGE_MAX_BODY_CHARS": "100"}
    worker = WorkerProcess(model_db, broker, tmp_path, extra_env=env).start()
    try:
        produce(broker, TOPIC_RAW, [(b"T-big", OVERSIZE), (None, INVALID)])
        wait_for(lambda: count(model_db, "SELECT count(*) FROM triage.dead_letters") == 2, 60, "two dead letters")
    finally:
        worker.stop()

    dead = rows(model_db, "SELECT original, reason, original_encrypted, purge_after - received_at, encoding "
                          "FROM triage.dead_letters ORDER BY id")
    assert {r[1].split(":")[0] for r in dead} == {"oversize", "invalid ticket"}
    for original, reason, token, retention, encoding in dead:
        for secret in SECRETS:
            assert secret not in original and secret not in reason, (original, reason)
        assert "<CARD_1>" in original and "<EMAIL_1>" in original and encoding == "utf-8"
        assert Fernet(KEY.encode()).decrypt(bytes(token)) in (OVERSIZE, INVALID)
        assert retention.days == 14
    dlq = asyncio.run(read_values(broker, TOPIC_DLQ, 2))
    assert len(dlq) == 2
    for value in dlq:
        assert not any(secret.encode() in value for secret in SECRETS), value
        assert "original_encrypted" not in json.loads(value)

    # Replay puts the exact bytes back on the source topic and marks the row.
    big, fax = _id(model_db, "oversize"), _id(model_db, "invalid ticket")
    assert main(["dlq", "replay", "--id", str(big)]) == 0
    assert f"replayed dead letter {big} to {TOPIC_RAW}" in capsys.readouterr().out
    assert asyncio.run(read_values(broker, TOPIC_RAW, 3)).count(OVERSIZE) == 2
    assert main(["dlq", "replay", "--id", str(big)]) == 1
    assert "pass --again" in capsys.readouterr().err
    assert main(["dlq", "list"]) == 0
    listed = capsys.readouterr().out
    assert "replayed" in listed and "oversize" in listed and '"ticket_id": "T-fax"' in listed
    assert not any(secret in listed for secret in SECRETS)

    # Another key cannot decrypt it: the error names the key and the fix.
    monkeypatch.setenv("TRIAGE_DLQ_KEY", Fernet.generate_key().decode())
    get_settings.cache_clear()
    assert main(["dlq", "replay", "--id", str(big), "--again"]) == 1
    err = capsys.readouterr().err
    assert f"dead letter {big}:" in err and "does not decrypt" in err and "set TRIAGE_DLQ_KEY" in err
    monkeypatch.setenv("TRIAGE_DLQ_KEY", KEY)
    get_settings.cache_clear()

    # Past its retention the worker's startup purge drops the encrypted original; the masked row stays.
    # (The restarted worker also dead-letters the replayed message again: a third row.)
    masked = rows(model_db, "SELECT original, reason FROM triage.dead_letters WHERE id = %s", (fax,))
    _expire(model_db, fax)
    worker = WorkerProcess(model_db, broker, tmp_path, extra_env=env).start()
    try:
        wait_for(lambda: _token(model_db, fax) is None, 30, "the startup purge")
        wait_for(lambda: count(model_db, "SELECT count(*) FROM triage.dead_letters") == 3, 30, "the replayed one")
    finally:
        worker.stop()
    assert rows(model_db, "SELECT original, reason FROM triage.dead_letters WHERE id = %s", (fax,)) == masked
    assert main(["dlq", "replay", "--id", str(fax)]) == 1
    assert "no longer holds its original" in capsys.readouterr().err

    # And `triage dlq purge` does the same on demand, only for what is past its date.
    _expire(model_db, big)
    assert main(["dlq", "purge"]) == 0
    assert "purged the originals of 1 expired" in capsys.readouterr().out
    assert _token(model_db, big) is None
    assert count(model_db, "SELECT count(*) FROM triage.dead_letters WHERE original_encrypted IS NOT NULL") == 1
