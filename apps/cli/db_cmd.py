"""`triage db migrate`."""

from __future__ import annotations

import argparse
from typing import Any

from triage import db
from triage.settings import get_settings


def register(sub: Any) -> None:
    p = sub.add_parser("db", help="database operations")
    dsub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = dsub.add_parser("migrate", help="apply pending migrations of the triage schema (idempotent)")
    m.set_defaults(func=migrate)


def migrate(args: argparse.Namespace) -> int:
    url = get_settings().db_url()
    applied = db.migrate(url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0
