"""`triage pii mask`: check the PII gate on your own text."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from apps.cli.common import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("pii", help="PII gate: detect and mask personal data and secrets")
    psub = p.add_subparsers(dest="pii_command", required=True, metavar="ACTION")
    m = psub.add_parser(
        "mask",
        help="read text on stdin; print it masked, then one line of JSON with what was found",
        description="Read text on standard input, print it with PII replaced by typed placeholders "
        "(<EMAIL_1>, <CARD_1>, ...), then one line of JSON: counts per type and the placeholders.",
    )
    m.add_argument(
        "--show-values", action="store_true", help="include the original values in the JSON (they are PII)"
    )
    m.set_defaults(func=cmd_mask)


def cmd_mask(args: argparse.Namespace) -> int:
    from triage.pii import safe_mask

    raw = sys.stdin.buffer.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start}); convert it first") from exc
    if not text.strip():
        raise UsageError("no text on stdin: pipe the text to check, e.g. `echo 'mail me at a@b.org' | triage pii mask`")
    result = safe_mask(text)
    if result is None:
        raise UsageError("masking failed on this input, so nothing is printed (see the log line above)")
    summary: dict[str, Any] = {"counts": result.counts, "placeholders": list(result.mapping)}
    if args.show_values:
        summary["values"] = result.mapping
    out = sys.stdout
    out.write(result.text if result.text.endswith("\n") else result.text + "\n")
    out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 0
