from __future__ import annotations

import threading

import psycopg
import psycopg.types.json
import pytest

from triage import db
from triage.names import SCHEMA, TABLES, VIEWS

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
    assert set(TABLES) | set(VIEWS) <= _tables(url)
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


def test_insert_from_json_writes_a_batch_skips_stored_rows_and_returns_the_new_keys(pg_server):
    db.ensure_database(pg_server.url(), "recordset")
    url = pg_server.url("recordset")
    with db.connect(url, autocommit=True) as conn:
        conn.execute('CREATE TABLE IF NOT EXISTS t (id text PRIMARY KEY, n integer, at timestamptz, doc jsonb, '
                     '"offset" bigint)')
        sql = db.insert_from_json("t", {"id": "text", "n": "integer", "at": "timestamptz", "doc": "jsonb",
                                        "offset": "bigint"}, conflict="id", returning="id")
        rows = [{"id": "a", "n": 1, "at": "2026-11-24T10:00:00Z", "doc": {"k": [1, 2]}, "offset": 2**40},
                {"id": "b", "n": None, "at": "2026-11-24T10:00:01+01:00", "doc": None, "offset": 0}]
        first = conn.execute(sql, (psycopg.types.json.Jsonb(rows),)).fetchall()
        again = conn.execute(sql, (psycopg.types.json.Jsonb([*rows, {**rows[0], "id": "c"}]),)).fetchall()
        stored = conn.execute('SELECT id, n, doc, "offset", extract(epoch FROM at) AS s FROM t ORDER BY id').fetchall()
    assert sorted(r["id"] for r in first) == ["a", "b"]
    assert [r["id"] for r in again] == ["c"], "rows already stored are skipped, not returned"
    assert [(r["id"], r["n"], r["doc"], r["offset"]) for r in stored] == [
        ("a", 1, {"k": [1, 2]}, 2**40), ("b", None, None, 0), ("c", 1, {"k": [1, 2]}, 2**40)]
    assert float(stored[1]["s"]) - float(stored[0]["s"]) == -3599.0, "offsets in timestamps are kept"


def test_0006_withholds_the_unmasked_originals_stored_before_it(pg_server, monkeypatch):
    db.ensure_database(pg_server.url(), "mig_0006")
    url = pg_server.url("mig_0006")
    every = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: [m for m in every if m.version < 6])
    db.migrate(url)
    with db.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {SCHEMA}.dead_letters (source_topic, partition, \"offset\", reason, original, "
                     "encoding) VALUES ('tickets.raw', 0, 1, 'not json: x', 'card 4111 1111 1111 1111', 'utf-8'), "
                     "('tickets.raw', 0, 2, 'not utf-8: byte 0', '//79', 'base64')")
    monkeypatch.setattr(db, "migrations", lambda: every)
    assert db.migrate(url)[0] == "0006_dead_letter_privacy"
    with db.connect(url) as conn:
        rows = conn.execute(f"SELECT reason, original, encoding, original_encrypted FROM {SCHEMA}.dead_letters "
                            "ORDER BY \"offset\"").fetchall()
    assert [(r["reason"], r["encoding"]) for r in rows] == [("not json: x", "utf-8"), ("not utf-8: byte 0", "binary")]
    assert all(r["original"].startswith("[withheld") and r["original_encrypted"] is None for r in rows)
