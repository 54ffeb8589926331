"""`airflow standalone` on the Triage Postgres, with `dags/` as its DAGs folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from apps.stack.procs import spawn, wait_until
from triage.settings import PROJECT_ROOT, Settings

HEALTH_PATH = "/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def airflow_home(settings: Settings) -> Path:
    return settings.state_dir / "airflow"


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for Airflow processes; variables the user already set (AIRFLOW__*) win."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # standalone spawns `airflow` by name
    sql_url = settings.db_url("airflow").replace("postgresql://", "postgresql+psycopg://", 1)
    defaults = {
        "AIRFLOW_HOME": str(airflow_home(settings)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_url,
        # Airflow would derive an asyncpg URL; psycopg 3 serves the async engine as well.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sql_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    return env


def check_airflow(port: int, timeout: float = 3.0) -> str | None:
    """None when every component in Airflow's health endpoint says healthy, else which are not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"health endpoint: {exc}"
    bad = [c for c in COMPONENTS if (body.get(c) or {}).get("status") != "healthy"]
    return f"unhealthy: {', '.join(bad)}" if bad else None


def login(settings: Settings) -> str:
    """`user / password` for the UI, from the simple auth manager's generated password file."""
    path = airflow_home(settings) / "simple_auth_manager_passwords.json.generated"
    try:
        passwords = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"admin / (password in {path})"
    return f"admin / {passwords.get('admin', '?')}"


class EmbeddedAirflow:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 420.0) -> subprocess.Popen[bytes]:
        env = airflow_env(self.settings)
        airflow_home(self.settings).mkdir(parents=True, exist_ok=True)
        airflow_bin = str(Path(sys.executable).parent / "airflow")
        self.proc = spawn([airflow_bin, "standalone"], self.log_path, env=env, cwd=PROJECT_ROOT)
        wait_until(
            lambda: check_airflow(self.settings.airflow_port),
            timeout,
            "Airflow",
            self.log_path,
            self.proc,
            interval=3.0,
        )
        return self.proc
