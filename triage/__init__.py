"""Triage: shared contracts (schemas, labels, settings, names), database access, CLI and stack launcher."""

from __future__ import annotations

__version__ = "0.1.0"
