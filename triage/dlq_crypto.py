"""The cipher that keeps a dead letter's exact bytes for replay, and nothing else: Fernet (AES-CBC + HMAC).

The key is TRIAGE_DLQ_KEY, else `<state_dir>/dlq.key`, created with mode 0600 on first use. Every worker
that stores dead letters and every `triage dlq replay` must use the same key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from triage.errors import TriageError
from triage.keyfile import read_or_create
from triage.settings import Settings, get_settings

_NEW_KEY = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class DlqKeyError(TriageError, ValueError):
    """The dead-letter key is malformed, or is not the key that encrypted a stored original."""


class DlqCipher:
    """Encrypt and decrypt originals with one key; `where` names the key's source in error messages."""

    def __init__(self, key: bytes, where: str) -> None:
        self.where = where
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise DlqKeyError(
                f"the dead-letter key in {where} is not a Fernet key (32 url-safe base64-encoded bytes); "
                f"set TRIAGE_DLQ_KEY to the key the workers use, or to a new one from `{_NEW_KEY}`"
            ) from None

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise DlqKeyError(
                f"the dead-letter key in {self.where} does not decrypt this original: it was encrypted with "
                "another key; set TRIAGE_DLQ_KEY (or put dlq.key in TRIAGE_STATE_DIR) to the key of the worker "
                "that stored it"
            ) from None


@lru_cache(maxsize=8)
def _cipher(env_key: str | None, key_file: Path) -> DlqCipher:
    if env_key is not None:
        return DlqCipher(env_key.encode(), "TRIAGE_DLQ_KEY")
    return DlqCipher(read_or_create(key_file, Fernet.generate_key), str(key_file))


def cipher(settings: Settings | None = None) -> DlqCipher:
    """The cipher of `settings` (default: the process's settings), loaded once per key."""
    s = settings or get_settings()
    return _cipher(s.dlq_key.get_secret_value() if s.dlq_key is not None else None, s.dlq_key_file)


def encrypt(data: bytes) -> bytes:
    """`data` encrypted with the process's dead-letter key (a Fernet token: URL-safe base64 bytes)."""
    return cipher().encrypt(data)


def decrypt(token: bytes) -> bytes:
    """The bytes `encrypt` was given; DlqKeyError naming the key and the fix when the key does not match."""
    return cipher().decrypt(token)
