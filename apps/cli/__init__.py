"""The `triage` command. Each module in this package adds its subcommands; heavy imports stay inside them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from apps.cli import (
    actions_cmd,
    canary_cmd,
    db_cmd,
    dlq_cmd,
    ml_cmd,
    monitoring_cmd,
    pii_cmd,
    stack_cmd,
    users_cmd,
    workspace_cmd,
)
from apps.cli.common import fail
from triage.errors import TriageError

REGISTRARS = (stack_cmd.register, db_cmd.register, pii_cmd.register, monitoring_cmd.register, actions_cmd.register,
              dlq_cmd.register, ml_cmd.register, canary_cmd.register, workspace_cmd.register, users_cmd.register)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="Real-time support-ticket triage.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (TriageError, FileNotFoundError) as exc:  # the one place errors become a line
        return fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
