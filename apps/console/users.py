"""People of the review console: accounts, argon2id password hashes, API tokens, roles.

Passwords are hashed by argon2-cffi (argon2id, its default parameters, rehashed when those change);
API tokens are 32 random bytes shown once and stored as their SHA-256. Nothing here keeps a secret in
clear, and every function takes the database URL so that the CLI and the web app share it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from triage import db
from triage.errors import TriageError
from triage.labels import ROLES
from triage.names import T_API_TOKENS, T_USERS, qualified

USERS, TOKENS = qualified(T_USERS), qualified(T_API_TOKENS)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"  # the CHECK of migration 0008
MIN_PASSWORD = 8
TOKEN_PREFIX = "trg_"
_hasher = PasswordHasher()
# Verified against when the name is unknown, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UserError(TriageError, ValueError):
    """A user command or login that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool = False

    def can(self, role: str) -> bool:
        """Whether this user has `role` or a higher one (reviewer < lead < admin)."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _check_name(name: str) -> None:
    if not re.match(NAME_PATTERN, name):
        raise UserError(f"user name {name!r}: use 1 to 64 letters, digits, '_', '.', '@' or '-', starting with a "
                        "letter or digit")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password has {len(password)} characters; use at least {MIN_PASSWORD}")


def add_user(url: str, name: str, role: str, password: str) -> User:
    """Create a user; refuse a taken name, an unknown role or a short password."""
    _check_name(name)
    if role not in ROLES:
        raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
    _check_password(password)
    with db.connect(url) as conn:
        row = conn.execute(f"INSERT INTO {USERS} (name, role, password_hash) VALUES (%s, %s, %s) "
                           "ON CONFLICT (name) DO NOTHING RETURNING name", (name, role, _hasher.hash(password))
                           ).fetchone()
    if row is None:
        raise UserError(f"user {name!r} exists; pick another name, or `triage users disable {name}` first")
    return User(name, role)


def set_password(url: str, name: str, password: str) -> None:
    _check_password(password)
    with db.connect(url) as conn:
        done = conn.execute(f"UPDATE {USERS} SET password_hash = %s, updated_at = now() WHERE name = %s",
                            (_hasher.hash(password), name)).rowcount
    if not done:
        raise UserError(f"no user {name!r}; see `triage users list`")


def get_user(url: str, name: str) -> User | None:
    with db.connect(url) as conn:
        row = conn.execute(f"SELECT name, role, disabled FROM {USERS} WHERE name = %s", (name,)).fetchone()
    return None if row is None else User(row["name"], row["role"], row["disabled"])


def list_users(url: str) -> list[dict[str, Any]]:
    with db.connect(url) as conn:
        return list(conn.execute(
            f"SELECT u.name, u.role, u.disabled, u.created_at, count(t.token_sha256) AS tokens FROM {USERS} u "
            f"LEFT JOIN {TOKENS} t ON t.user_name = u.name GROUP BY u.name ORDER BY u.name").fetchall())


def disable_user(url: str, name: str) -> None:
    """Disable a user: their password, sessions and tokens stop working at once."""
    with db.connect(url) as conn:
        done = conn.execute(f"UPDATE {USERS} SET disabled = true, updated_at = now() WHERE name = %s",
                            (name,)).rowcount
        conn.execute(f"DELETE FROM {TOKENS} WHERE user_name = %s", (name,))
    if not done:
        raise UserError(f"no user {name!r}; see `triage users list`")


def authenticate(url: str, name: str, password: str) -> User | None:
    """The user when the name and password match an enabled account, else None (same cost either way)."""
    with db.connect(url) as conn:
        row = conn.execute(f"SELECT name, role, disabled, password_hash FROM {USERS} WHERE name = %s",
                           (name,)).fetchone()
    stored = row["password_hash"] if row is not None and row["password_hash"] else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row["disabled"] or stored is _DUMMY_HASH:
        return None
    if _hasher.check_needs_rehash(stored):
        with db.connect(url) as conn:
            conn.execute(f"UPDATE {USERS} SET password_hash = %s WHERE name = %s", (_hasher.hash(password), name))
    return User(row["name"], row["role"], False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(url: str, name: str) -> str:
    """A new API token for an enabled user; only its digest is stored, so it is shown once."""
    user = get_user(url, name)
    if user is None or user.disabled:
        raise UserError(f"no enabled user {name!r}; add one with `triage users add {name} --role reviewer "
                        "--password-stdin`")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.connect(url) as conn:
        conn.execute(f"INSERT INTO {TOKENS} (token_sha256, user_name) VALUES (%s, %s)", (_digest(token), name))
    return token


def user_for_token(url: str, token: str) -> User | None:
    """The enabled user a bearer token belongs to, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with db.connect(url) as conn:
        row = conn.execute(
            f"UPDATE {TOKENS} t SET last_used_at = now() FROM {USERS} u WHERE t.token_sha256 = %s "
            "AND u.name = t.user_name AND NOT u.disabled RETURNING u.name, u.role", (_digest(token),)).fetchone()
    return None if row is None else User(row["name"], row["role"])


def service_token(url: str, name: str) -> str:
    """A fresh token for a machine user (`name`, role reviewer, no usable password), created if missing;
    its earlier tokens are revoked. What `triage up` gives the simulator's reviewer."""
    _check_name(name)
    with db.connect(url) as conn:
        conn.execute(f"INSERT INTO {USERS} (name, role) VALUES (%s, 'reviewer') ON CONFLICT (name) DO NOTHING",
                     (name,))
        conn.execute(f"DELETE FROM {TOKENS} WHERE user_name = %s", (name,))
    return issue_token(url, name)
