"""`triage users add | token | disable | passwd | list` and `triage console`: the review console's people.

Passwords are read from stdin (`--password-stdin`), never from the command line, where `ps` and shell
history would keep them. Hashing, tokens and roles live in `apps.console.users`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from apps.cli.common import UsageError, reachable_db_url
from triage.labels import ROLES


def register(sub: Any) -> None:
    p = sub.add_parser("users", help="people of the review console: add, token, disable, passwd, list")
    users = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users.add_parser("add", help="add a user (the password is read from stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True, help="reviewer works tickets; lead also sees everyone's "
                     "work and the metrics; admin also manages users")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from stdin (first line)")
    add.set_defaults(func=cmd_add)
    tok = users.add_parser("token", help="print a new API token for NAME (Authorization: Bearer TOKEN)")
    tok.add_argument("name")
    tok.set_defaults(func=cmd_token)
    dis = users.add_parser("disable", help="disable NAME: password, sessions and tokens stop working")
    dis.add_argument("name")
    dis.set_defaults(func=cmd_disable)
    pw = users.add_parser("passwd", help="set NAME's password (read from stdin)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", required=True)
    pw.set_defaults(func=cmd_passwd)
    ls = users.add_parser("list", help="list users, their roles and how many tokens they hold")
    ls.set_defaults(func=cmd_list)

    c = sub.add_parser("console", help="serve the review console (triage up starts it with the stack)")
    c.add_argument("--port", type=int, default=None, help="port (default: TRIAGE_CONSOLE_PORT, 8090)")
    c.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 in a "
                   "container)")
    c.set_defaults(func=cmd_console)


def _password() -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError("no password on stdin; pipe one in: printf '%s\\n' \"$PASSWORD\" | triage users add ...")
    return line


def cmd_add(args: argparse.Namespace) -> int:
    from apps.console.users import add_user

    user = add_user(reachable_db_url(), args.name, args.role, _password())
    print(f"added {user.name} ({user.role}); `triage users token {user.name}` prints an API token")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from apps.console.users import issue_token

    print(issue_token(reachable_db_url(), args.name))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    from apps.console.users import disable_user

    disable_user(reachable_db_url(), args.name)
    print(f"disabled {args.name}: their password, sessions and tokens no longer work")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from apps.console.users import set_password

    set_password(reachable_db_url(), args.name, _password())
    print(f"password of {args.name} changed")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from apps.console.users import list_users

    rows = list_users(reachable_db_url())
    if not rows:
        print("no users; add one: triage users add NAME --role admin --password-stdin")
    for r in rows:
        state = "disabled" if r["disabled"] else "enabled"
        print(f"{r['name']:24} {r['role']:9} {state:9} tokens: {r['tokens']}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from apps.console.app import serve
    from triage.settings import get_settings

    settings = get_settings()
    if args.port is not None:
        settings = settings.model_copy(update={"console_port": args.port})
    reachable_db_url()
    serve(settings, host=args.host)
    return 0
