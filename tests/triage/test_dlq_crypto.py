"""The dead-letter cipher: round trip, where the key comes from, and the errors that name the key and the fix."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from triage.dlq_crypto import DlqCipher, DlqKeyError, cipher
from triage.settings import load_settings


def test_round_trip_keeps_every_byte_and_hides_them() -> None:
    c = DlqCipher(Fernet.generate_key(), "a test key")
    raw = b'{"body": "card 4111 1111 1111 1111"}\xff\x00'
    token = c.encrypt(raw)
    assert b"4111" not in token and raw not in token
    assert c.decrypt(token) == raw
    assert c.decrypt(c.encrypt(b"")) == b""


def test_the_key_comes_from_the_setting(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    s = load_settings({"TRIAGE_DLQ_KEY": key, "TRIAGE_STATE_DIR": str(tmp_path)})
    token = cipher(s).encrypt(b"x")
    assert Fernet(key.encode()).decrypt(token) == b"x"
    assert not (tmp_path / "dlq.key").exists()


def test_without_the_setting_a_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    s = load_settings({"TRIAGE_STATE_DIR": str(tmp_path / "state")})
    token = cipher(s).encrypt(b"x")
    path = s.dlq_key_file
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Fernet(path.read_bytes()).decrypt(token) == b"x"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_workers_starting_at_once_agree_on_one_key(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from triage.keyfile import read_or_create

    path = tmp_path / "dlq.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(read_or_create(path, Fernet.generate_key)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_bytes().strip()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_malformed_key_names_the_setting_and_the_fix(tmp_path: Path) -> None:
    s = load_settings({"TRIAGE_DLQ_KEY": "not-a-key", "TRIAGE_STATE_DIR": str(tmp_path)})
    with pytest.raises(DlqKeyError, match=r"TRIAGE_DLQ_KEY is not a Fernet key.*generate_key"):
        cipher(s)
    (tmp_path / "dlq.key").write_text("garbage\n")
    with pytest.raises(DlqKeyError, match=r"dlq\.key is not a Fernet key"):
        cipher(load_settings({"TRIAGE_STATE_DIR": str(tmp_path)}))


def test_the_wrong_key_says_so_and_how_to_fix_it() -> None:
    token = DlqCipher(Fernet.generate_key(), "one key").encrypt(b"x")
    with pytest.raises(DlqKeyError, match=r"key in TRIAGE_DLQ_KEY does not decrypt.*set TRIAGE_DLQ_KEY"):
        DlqCipher(Fernet.generate_key(), "TRIAGE_DLQ_KEY").decrypt(token)
