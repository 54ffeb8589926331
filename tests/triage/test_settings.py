from __future__ import annotations

from pathlib import Path

import pytest

from triage.settings import Settings, SettingsError, known_env_names, load_settings


def test_defaults_use_embedded_services():
    s = load_settings({})
    assert s.embedded_postgres and s.embedded_kafka
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.db_url().startswith("postgresql://postgres@/triage?host=")
    assert s.models_dir == s.state_dir / "models"


def test_external_services_come_from_standard_variables():
    s = load_settings({"DATABASE_URL": "postgresql://u:p@db:5432/triage", "KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert not s.embedded_postgres and s.db_url() == "postgresql://u:p@db:5432/triage"
    assert s.bootstrap_servers == "k:9092"


def test_unknown_setting_is_named_with_a_suggestion():
    with pytest.raises(SettingsError, match=r"unknown setting TRIAGE_KAFKA_PROT: did you mean TRIAGE_KAFKA_PORT\?"):
        load_settings({"TRIAGE_KAFKA_PROT": "1"})


def test_invalid_value_names_variable_and_fix():
    with pytest.raises(SettingsError, match=r"TRIAGE_BATCH_SIZE='0' is invalid.*fix the value"):
        load_settings({"TRIAGE_BATCH_SIZE": "0"})


def test_values_are_parsed_and_typed(tmp_path: Path):
    s = load_settings({"TRIAGE_STATE_DIR": str(tmp_path), "TRIAGE_BATCH_SIZE": "64", "TRIAGE_AIRFLOW": "false"})
    assert s.state_dir == tmp_path and s.batch_size == 64 and s.airflow is False
    assert s.db_url().endswith(f"host={tmp_path / 'pg'}&port=5432")


def test_every_field_has_a_documented_environment_variable():
    names = known_env_names()
    assert len(names) == len(Settings.model_fields)
    assert all(Settings.model_fields[f].description for f in names.values())
