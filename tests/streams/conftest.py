"""Stream fixtures: a small real model (built once by `ml.tiny` in the ops environment), a database with
it registered as champion, and a broker of the test's own so integration tests do not share topics."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from triage.names import TOPICS
from triage.schemas import ModelVersion
from triage.settings import PROJECT_ROOT
from triage.stack.kafka import EmbeddedKafka, ensure_topics
from triage.stack.procs import free_port, stop_group

OPS_PYTHON = PROJECT_ROOT / ".venv" / "bin" / "python"
MODEL_NAME = "triage-classifier"


def _source_key() -> str:
    """Hash of what the tiny model is built from: a change to any of it rebuilds the cached model."""
    h = hashlib.sha256()
    for path in sorted([*(PROJECT_ROOT / "ml").rglob("*.py"), PROJECT_ROOT / "triage" / "labels.py",
                        PROJECT_ROOT / "triage" / "simulator.py", PROJECT_ROOT / "triage" / "sim_text.py"]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A complete small model folder (ONNX fp32 + int8, tokenizer, label maps) from `ml.tiny`.

    Building takes 15-60 s on a busy 2-core machine, so it is cached under `.triage/test-cache`,
    keyed by the hash of its sources.
    """
    out = PROJECT_ROOT / ".triage" / "test-cache" / f"tiny-{_source_key()}"
    if (out / "model.int8.onnx").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run([str(OPS_PYTHON), "-m", "ml.tiny", str(tmp)], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, f"ml.tiny failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    try:
        tmp.rename(out)
    except OSError:  # another session built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def register_champion(url: str, model_dir: Path, store: Path) -> ModelVersion:
    from ml import registry

    return registry.register(url, model_dir, name=MODEL_NAME, status="champion", changed_by="tests",
                             reason="test fixture", models_dir=store)


@pytest.fixture()
def model_db(db_url: str, tiny_model: Path, tmp_path: Path) -> str:
    """A fresh migrated database with the tiny model registered as champion (version 1)."""
    register_champion(db_url, tiny_model, tmp_path / "models")
    return db_url


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own (memory-only, starts in about a second), with Triage's topics."""
    b = EmbeddedKafka(free_port(), tmp_path / "kafka.log")
    proc = b.start()
    try:
        ensure_topics(b.bootstrap, TOPICS, 4)
        yield b.bootstrap
    finally:
        stop_group(proc.pid)
