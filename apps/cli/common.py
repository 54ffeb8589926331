"""Shared CLI plumbing: the errors a user can cause and how they are printed."""

from __future__ import annotations

import sys

from apps.stack.procs import StackError
from triage.db import DatabaseUnavailable
from triage.settings import SettingsError


class UsageError(ValueError):
    """Bad input to a command; the message names the input and the fix."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    StackError,
    SettingsError,
    DatabaseUnavailable,
    UsageError,
    FileNotFoundError,
)


def fail(message: str, code: int = 1) -> int:
    """Print one clear line to stderr and return the exit code."""
    print(f"triage: error: {message}", file=sys.stderr)
    return code
