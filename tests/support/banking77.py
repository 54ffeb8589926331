"""Where the tests find Banking77 (CC BY 4.0): data no generator of ours wrote, read in place, never copied.

`../shared/data/banking77/` beside the checkout, or BANKING77_DIR; a test that needs it is skipped, with the
path it looked at, where neither is there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triage.settings import PROJECT_ROOT

BANKING77_DIR = Path(os.environ.get("BANKING77_DIR") or PROJECT_ROOT.parent / "shared" / "data" / "banking77")


def banking77(split: str = "train") -> Path:
    """The split's CSV (columns text, category); skips the calling test when it is not here."""
    path = BANKING77_DIR / f"{split}.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not here (the shared Banking77 copy; set BANKING77_DIR to its folder)")
    return path
