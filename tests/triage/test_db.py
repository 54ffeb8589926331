from __future__ import annotations

import threading

import psycopg
import pytest

from triage import db
from triage.names import SCHEMA, TABLES

pytestmark = pytest.mark.integration


def _tables(url: str) -> set[str]:
    with db.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (SCHEMA,)
        ).fetchall()
    return {r["table_name"] for r in rows}


def test_migrate_empty_database_then_rerun_is_a_no_op(pg_server):
    db.ensure_database(pg_server.url(), "mig_fresh")
    url = pg_server.url("mig_fresh")
    first = db.migrate(url)
    assert first and first[0].startswith("0001_")
    assert set(TABLES) <= _tables(url)
    assert db.migrate(url) == []


def test_concurrent_migrations_apply_once(pg_server):
    db.ensure_database(pg_server.url(), "mig_concurrent")
    url = pg_server.url("mig_concurrent")
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(db.migrate(url))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [r for r in results if r]
    assert len(applied) == 1


def test_edited_migration_is_refused(db_url):
    with db.connect(db_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {SCHEMA}.schema_migrations SET checksum = 'x' WHERE version = 1")
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        db.migrate(db_url)


def test_one_champion_per_model_is_enforced_by_the_database(db_url):
    row = ("m", "{}", "base", "fp", "/x", "0" * 64)
    sql = (
        f"INSERT INTO {SCHEMA}.model_versions (name, version, status, heads, base_model, data_fingerprint,"
        " artifact_path, artifact_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    )
    with db.connect(db_url, autocommit=True) as conn:
        conn.execute(sql, (row[0], 1, "champion", *row[1:]))
        conn.execute(sql, (row[0], 2, "candidate", *row[1:]))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"UPDATE {SCHEMA}.model_versions SET status = 'champion' WHERE version = 2")


def test_unreachable_database_names_url_and_fix(tmp_path):
    url = f"postgresql://postgres@/nope?host={tmp_path}&port=1"
    with pytest.raises(db.DatabaseUnavailable, match=r"cannot reach PostgreSQL at .*DATABASE_URL"):
        db.connect(url, timeout=1)
