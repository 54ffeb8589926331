"""`triage actions list` and `triage actions retry`: look at the outbox and re-queue parked actions.

Only psycopg, the standard library and `triage` are imported, so this works from the ops environment;
the stream worker's dispatcher re-uses `retry_parked`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import psycopg

from apps.cli.common import UsageError
from triage import db
from triage.names import T_ACTIONS, qualified
from triage.settings import get_settings

_RETRY = (
    f"UPDATE {qualified(T_ACTIONS)} SET status = 'pending', attempts = 0, next_attempt_at = now(), "
    "updated_at = now() WHERE status = 'parked' "
    "AND (%(ids)s::text[] IS NULL OR action_id = ANY(%(ids)s) OR idempotency_key = ANY(%(ids)s)) "
    "AND (%(adapter)s::text IS NULL OR adapter = %(adapter)s) RETURNING action_id"
)
_LIST = (
    f"SELECT action_id, kind, adapter, status, attempts, last_error, updated_at FROM {qualified(T_ACTIONS)} "
    "WHERE (%(status)s::text IS NULL OR status = %(status)s) ORDER BY updated_at DESC LIMIT %(limit)s"
)
_COUNTS = f"SELECT status, count(*) FROM {qualified(T_ACTIONS)} GROUP BY status ORDER BY status"


def retry_parked(url: str, ids: Sequence[str] | None = None, adapter: str | None = None) -> list[str]:
    """Put parked actions (all, or those with the given ids / idempotency keys, or of one adapter) back to
    pending with a fresh attempt count; the dispatcher delivers them on its next poll. Returns their ids.
    The last error stays on the row until a delivery succeeds."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(_RETRY, {"ids": list(ids) if ids else None, "adapter": adapter}).fetchall()
    return [str(r[0]) for r in rows]


def outbox_counts(url: str) -> dict[str, int]:
    """Actions per status (for `triage status`)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return {str(s): int(n) for s, n in conn.execute(_COUNTS).fetchall()}


def register(sub: Any) -> None:
    p = sub.add_parser("actions", help="outbox of effects: list actions, re-queue parked ones")
    asub = p.add_subparsers(dest="actions_command", required=True, metavar="ACTION")
    r = asub.add_parser("retry", help="re-queue parked actions (all, or by id / idempotency key, or by adapter)")
    r.add_argument("ids", nargs="*", help="action ids or idempotency keys; none = every parked action")
    r.add_argument("--adapter", help="only actions of this adapter (webhook, work_queue)")
    r.set_defaults(func=cmd_retry)
    ls = asub.add_parser("list", help="recent actions with their status and last error")
    ls.add_argument("--status", choices=("pending", "delivered", "failed", "parked"), help="only this status")
    ls.add_argument("--limit", type=int, default=20, help="how many rows (default 20)")
    ls.set_defaults(func=cmd_list)


def _url() -> str:
    url = get_settings().db_url()
    db.connect(url).close()  # a clear DatabaseUnavailable message when it is down
    return url


def cmd_retry(args: argparse.Namespace) -> int:
    url = _url()
    requeued = retry_parked(url, args.ids or None, args.adapter)
    if not requeued:
        what = f" matching {', '.join(args.ids)}" if args.ids else ""
        if args.ids:
            raise UsageError(f"no parked action{what}; see `triage actions list --status parked`")
        print("no parked actions")
        return 0
    for action_id in requeued:
        print(f"re-queued {action_id}")
    print(f"{len(requeued)} action(s) re-queued; the stream worker's dispatcher delivers them next")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be at least 1")
    url = _url()
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(_LIST, {"status": args.status, "limit": args.limit}).fetchall()
    counts = outbox_counts(url)
    print("outbox: " + (", ".join(f"{s} {n}" for s, n in counts.items()) or "empty"))
    for action_id, kind, adapter, status, attempts, last_error, updated_at in rows:
        err = f"  last error: {last_error}" if last_error else ""
        print(
            f"{updated_at:%Y-%m-%d %H:%M:%S}  {status:<9} {adapter:<10} {kind:<9} attempts={attempts}  {action_id}{err}"
        )
    return 0
