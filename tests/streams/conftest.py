"""Stream fixtures: a small real model (built once by `ml.tiny` in the ops environment), a database with
it registered as champion, and a broker of the test's own so integration tests do not share topics."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete small model folder (ONNX fp32 + int8, tokenizer, label maps), built in seconds."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    result = subprocess.run([str(OPS_PYTHON), "-m", "ml.tiny", str(out)], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, f"ml.tiny failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
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
