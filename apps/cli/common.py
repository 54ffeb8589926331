"""Shared CLI plumbing: how an error a user can cause is printed."""

from __future__ import annotations

import sys

from triage.errors import UsageError

__all__ = ["UsageError", "fail"]


def fail(message: str, code: int = 1) -> int:
    """Print one clear line to stderr and return the exit code."""
    print(f"triage: error: {message}", file=sys.stderr)
    return code


def reachable_db_url() -> str:
    """The configured database URL, after one connection: a clear DatabaseUnavailable message when it is down."""
    from triage import db
    from triage.settings import get_settings

    url = get_settings().db_url()
    db.connect(url).close()
    return url
