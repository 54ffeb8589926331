"""Process plumbing for the stack: start detached children, wait for health, stop whole process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from triage.errors import TriageError


class StackError(TriageError, RuntimeError):
    """A problem a user can fix; the message names it and the fix."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): reap it if it is ours, and count it as gone either way.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_free_port(port: int, what: str, setting: str) -> None:
    if port_in_use(port):
        raise StackError(
            f"port {port} for {what} is in use by another process; stop that process or set {setting} to a free port"
        )


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session (so its whole group can be stopped), output to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            user=user,
        )


def stop_group(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process group led by `pid`, wait, then SIGKILL whatever is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    if pid_alive(pgid):
        return True
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Members other than the leader may remain; zombies of ours are reaped by pid_alive above.
    return _group_has_live_members(pgid)


def _group_has_live_members(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] = state, fields[2] = pgrp
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def wait_until(
    check: Callable[[], str | None],
    timeout: float,
    what: str,
    log_path: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll `check` (None = healthy, else the reason) until healthy; raise StackError on timeout or exit."""
    deadline = time.monotonic() + timeout
    reason = "not checked yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting; {_see(log_path)}")
        reason = check() or ""
        if not reason:
            return
        time.sleep(interval)
    raise StackError(f"{what} not healthy after {timeout:.0f}s ({reason}); {_see(log_path)}")


def _see(log_path: Path | None) -> str:
    if log_path is None:
        return "check its output"
    tail = ""
    with contextlib.suppress(OSError):
        lines = log_path.read_text(errors="replace").strip().splitlines()
        tail = f": last line: {lines[-1][:200]}" if lines else ""
    return f"see {log_path}{tail}"
