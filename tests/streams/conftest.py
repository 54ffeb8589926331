"""Stream fixtures: a database with the small real model (built once by `tests.support.tiny_model` in the ops
environment) registered as champion. The broker of a test's own is `tests/conftest.py: broker`."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.schemas import ModelVersion

MODEL_NAME = "triage-classifier"


def register_champion(url: str, model_dir: Path, store: Path) -> ModelVersion:
    from ml import registry

    return registry.register(
        url, model_dir, name=MODEL_NAME, status="champion", changed_by="tests", reason="test fixture", models_dir=store
    )


@pytest.fixture()
def model_db(db_url: str, tiny_model: Path, tmp_path: Path) -> str:
    """A fresh migrated database with the tiny model registered as champion (version 1)."""
    register_champion(db_url, tiny_model, tmp_path / "models")
    return db_url


