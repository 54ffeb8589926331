"""The stack launcher's refusals: each a single clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apps.stack.procs import StackError, free_port
from apps.stack.supervisor import Supervisor, state_for
from triage.settings import PROJECT_ROOT, load_settings

TRIAGE = str(Path(sys.executable).parent / "triage")


def _settings(tmp_path: Path, **extra: str):
    env = {
        "TRIAGE_STATE_DIR": str(tmp_path),
        "TRIAGE_KAFKA_PORT": str(free_port()),
        "TRIAGE_AIRFLOW_PORT": str(free_port()),
        "TRIAGE_WORKER_PORT": str(free_port()),
        "TRIAGE_DRAFTING_PORT": str(free_port()),
        **extra,
    }
    return env, load_settings(env)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    return subprocess.run(
        [TRIAGE, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT
    )


def test_port_in_use_is_named_with_the_setting_to_change(tmp_path):
    env, settings = _settings(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", settings.kafka_port))
        s.listen()
        with pytest.raises(StackError, match=rf"port {settings.kafka_port} .* TRIAGE_KAFKA_PORT"):
            Supervisor(settings).preflight()


def test_stale_pid_file_is_refused_with_the_fix(tmp_path):
    _, settings = _settings(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state_for(settings).write({"supervisor": dead.pid, "parts": {}})
    with pytest.raises(StackError, match=r"stale pid file .* run `triage down`"):
        Supervisor(settings).preflight()


def test_second_up_says_one_is_running(tmp_path):
    _, settings = _settings(tmp_path)
    state_for(settings).write({"supervisor": os.getpid(), "parts": {}})
    with pytest.raises(StackError, match="already running"):
        Supervisor(settings).preflight()


def test_down_cleans_a_stale_pid_file_and_stops_leftover_parts(tmp_path):
    env, settings = _settings(tmp_path)
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    state_for(settings).write({"supervisor": 999_999_9, "parts": {"simulator": {"pid": leftover.pid}}})
    result = _run(["down"], env)
    assert result.returncode == 0, result.stderr
    assert leftover.wait(timeout=10) is not None
    assert not state_for(settings).path.exists()


def test_unreachable_external_database_is_one_line_and_non_zero(tmp_path):
    env, _ = _settings(tmp_path, DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/triage")
    result = _run(["up", "--no-airflow", "--no-simulator"], env)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("triage: error:")]
    assert len(errors) == 1 and "DATABASE_URL" in errors[0], result.stderr
    assert not state_for(load_settings(env)).path.exists()


def test_unknown_setting_fails_before_anything_starts(tmp_path):
    env, _ = _settings(tmp_path)
    env["TRIAGE_BATCHSIZE"] = "3"
    result = _run(["status"], env)
    assert result.returncode == 1
    assert result.stderr.strip() == "triage: error: unknown setting TRIAGE_BATCHSIZE: did you mean TRIAGE_BATCH_SIZE?"


def test_status_is_non_zero_when_nothing_runs(tmp_path):
    env, _ = _settings(tmp_path)
    result = _run(["status"], env)
    assert result.returncode == 1
    assert "postgres   UNHEALTHY" in result.stdout and "kafka      UNHEALTHY" in result.stdout


def test_pid_file_is_json_with_parts(tmp_path):
    _, settings = _settings(tmp_path)
    state_for(settings).write({"supervisor": 1, "parts": {"kafka": {"pid": 2}}})
    assert json.loads(state_for(settings).path.read_text())["parts"]["kafka"]["pid"] == 2
