"""The one error base class: the CLI and the web app translate a TriageError to a line or a status code."""

from __future__ import annotations


class TriageError(Exception):
    """An error a user or operator can act on; its message names the input and the fix."""


class UsageError(TriageError, ValueError):
    """Bad input to a command (a flag, stdin); the message names the input and the fix."""
