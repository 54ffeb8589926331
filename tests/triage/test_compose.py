"""docker-compose.yml cannot run here (no Docker engine), so check that it agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from triage.settings import PROJECT_ROOT, Settings, known_env_names, load_settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
REQUIRED = {
    "postgres",
    "kafka",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "worker",
    "drafting",
    "console",
    "llm",
    "metabase",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _example_vars() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _substitute(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", str(value))


def test_every_service_is_buildable_and_healthchecked(compose):
    services = compose["services"]
    assert set(services) >= REQUIRED
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            assert (PROJECT_ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).exists(), name
        if name != "migrate":
            assert "healthcheck" in svc, f"{name} has no healthcheck"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_images_are_built_from_the_pinned_requirements():
    assert "requirements.txt" in (PROJECT_ROOT / "dags/Dockerfile").read_text()
    assert "streams/requirements.txt" in (PROJECT_ROOT / "streams/Dockerfile").read_text()


def test_triage_environment_is_valid_settings(compose):
    example = _example_vars()
    known = known_env_names()
    for name in ("worker", "airflow-scheduler"):
        env = {k: _substitute(v, example) for k, v in compose["services"][name]["environment"].items()}
        triage_env = {k: v for k, v in env.items() if k in known or k.startswith("TRIAGE_")}
        settings = load_settings(triage_env)  # raises on unknown or invalid settings
        assert not settings.embedded_postgres and not settings.embedded_kafka
        assert settings.bootstrap_servers == "kafka:9092"


def test_ports_match_the_settings_defaults(compose):
    services = compose["services"]
    defaults = Settings()
    assert f"{defaults.airflow_port}:8080" in services["airflow-apiserver"]["ports"]
    worker_env = services["worker"]["environment"]
    assert str(worker_env["TRIAGE_WORKER_PORT"]) in services["worker"]["healthcheck"]["test"][1]
    kafka_host = services["worker"]["environment"]["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0]
    assert kafka_host in services


def test_env_example_documents_every_variable_compose_reads(compose):
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{(\w+)", text))
    example = _example_vars()
    assert used <= set(example), f"undocumented in .env.example: {sorted(used - set(example))}"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"{line.split('=')[0]} has no comment in .env.example"
    for key in example:
        if key.startswith("TRIAGE_"):
            assert key in known_env_names(), f"{key} in .env.example is not a Triage setting"


def test_env_file_is_ignored():
    assert ".env" in Path(PROJECT_ROOT / ".gitignore").read_text().split()
