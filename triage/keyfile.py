"""A secret kept in a 0600 file under the state folder, created on first use: the one way Triage does it.

Used for the dead-letter key (`dlq.key`) and the console's session-signing secret (`console.key`).
Two processes starting at once agree on one key: the file is written aside and hard-linked into place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The key in `path`; a new one from `make()` (mode 0600) when there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp: mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(make())
            os.link(tmp, path)  # atomic, and fails if another process won: then its key is read below
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_bytes().strip()
