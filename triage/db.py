"""Database access: connections and versioned, idempotent migrations of the `triage` schema."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import dict_row

from triage.errors import TriageError
from triage.names import SCHEMA, T_MIGRATIONS
from triage.settings import get_settings

# Any stable 64-bit number: serialises concurrent `triage db migrate` runs.
_MIGRATION_LOCK = 0x7472696167650001
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def insert_from_json(table: str, columns: dict[str, str], conflict: str, returning: str | None = None) -> str:
    """`INSERT ... SELECT` from one jsonb parameter holding a whole batch of rows (a JSON array of objects).

    One statement and one parameter per batch, whatever its size: the client serialises the rows with
    one `json.dumps` instead of adapting every value of every row. `columns` maps each column (and
    JSON key) to its SQL type; rows already stored (`conflict` target) are skipped.
    """
    names = ", ".join(f'"{c}"' for c in columns)
    typed = ", ".join(f'"{c}" {t}' for c, t in columns.items())
    sql = (f"INSERT INTO {table} ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb) AS r({typed}) "
           f"ON CONFLICT ({conflict}) DO NOTHING")
    return sql + (f' RETURNING "{returning}"' if returning else "")


class DatabaseUnavailable(TriageError, RuntimeError):
    """The database cannot be reached; the message names the URL and the fix."""


def redact(url: str) -> str:
    """A URL safe to print: the password replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def connect(url: str | None = None, *, autocommit: bool = False, timeout: float = 5.0) -> psycopg.Connection[Any]:
    """Open a connection to the Triage database (dict rows)."""
    url = url or get_settings().db_url()
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)), row_factory=dict_row)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {redact(url)} ({first}); start it with `triage up` "
            "or set DATABASE_URL to a reachable server"
        ) from None


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migration files shipped in `triage/migrations`, in order."""
    found = []
    for entry in resources.files("triage.migrations").iterdir():
        m = _MIGRATION_FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda mig: mig.version)


def migrate(url: str | None = None) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    Safe to run concurrently (an advisory lock serialises runs) and to re-run (applied
    versions are skipped). A migration file edited after it was applied is refused.
    """
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{T_MIGRATIONS} ("
                "version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute(f"SELECT version, name, checksum FROM {SCHEMA}.{T_MIGRATIONS}").fetchall()
            done = {r["version"]: r for r in rows}
            for mig in migrations():
                prior = done.get(mig.version)
                if prior is not None:
                    if prior["checksum"] != mig.checksum:
                        raise RuntimeError(
                            f"migration {mig.version:04d}_{mig.name}.sql changed after it was applied; "
                            "add a new migration file instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(mig.sql.encode())
                    conn.execute(
                        f"INSERT INTO {SCHEMA}.{T_MIGRATIONS} (version, name, checksum) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                applied_now.append(f"{mig.version:04d}_{mig.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


def ensure_database(admin_url: str, name: str) -> bool:
    """Create database `name` if missing (on the server of `admin_url`); True if created."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"database name {name!r} must be lower-case letters, digits and underscores")
    with connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
        return True
