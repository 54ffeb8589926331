"""`airflow standalone` on the Triage Postgres, with `dags/` as its DAGs folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from apps.stack.procs import StackError, spawn, wait_until
from triage.settings import PROJECT_ROOT, Settings

HEALTH_PATH = "/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TRIAGE_TAG = "triage"  # every DAG in dags/ carries it
UNPAUSED_MARK = "triage_dags_unpaused"  # in AIRFLOW_HOME: the one-time unpause of an older stack is done


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
        # Tasks reach the API server here; Airflow would assume port 8080 whatever AIRFLOW__API__PORT says.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(settings.airflow_dags_paused),
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


def password_file(settings: Settings) -> Path:
    return airflow_home(settings) / "simple_auth_manager_passwords.json.generated"


def admin_password(settings: Settings) -> str | None:
    """The admin's password that the simple auth manager generated, None before it has."""
    try:
        password = json.loads(password_file(settings).read_text()).get("admin")
    except (OSError, ValueError, AttributeError):
        return None
    return str(password) if password else None


def login(settings: Settings) -> str:
    """`user / password` for the UI, from the simple auth manager's generated password file."""
    password = admin_password(settings)
    return f"admin / {password}" if password else f"admin / (password in {password_file(settings)})"


class AirflowAPI:
    """A small client of Airflow's REST API, as the admin, with a token from `POST /auth/token`."""

    def __init__(self, port: int, password: str, timeout: float = 15.0) -> None:
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=timeout)
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )

    @classmethod
    def for_settings(cls, settings: Settings) -> AirflowAPI:
        password = admin_password(settings)
        if password is None:
            raise StackError(f"no Airflow admin password in {password_file(settings)}; is Airflow running?")
        return cls(settings.airflow_port, password)

    def _json(self, resp: httpx.Response) -> Any:
        resp.raise_for_status()
        return resp.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._json(self.client.get(path, params=params, headers={"Accept": "application/json"}))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._json(self.client.post(path, json=body))

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._json(self.client.patch(path, json=body))

    def close(self) -> None:
        self.client.close()

    def triage_dags(self) -> list[dict[str, Any]]:
        dags: list[dict[str, Any]] = self.get("/api/v2/dags", tags=TRIAGE_TAG, limit=100)["dags"]
        return sorted(dags, key=lambda d: str(d["dag_id"]))


def dags_line(dags: list[dict[str, Any]], expected: int) -> str:
    """`scheduled: drift_report (every hour, 0 * * * *), ...; on demand: ...; paused: ...` for the startup lines."""

    def when(dag: dict[str, Any]) -> str:
        summary, description = str(dag.get("timetable_summary")), str(dag.get("timetable_description") or "")
        text = description[:1].lower() + description[1:] if description else summary
        return f"{dag['dag_id']} ({text}, {summary})" if description and len(summary.split()) == 5 else (
            f"{dag['dag_id']} ({text})")

    active = [d for d in dags if not d["is_paused"]]
    scheduled = [when(d) for d in active if d.get("timetable_summary") not in (None, "None")]
    manual = [d["dag_id"] for d in active if d.get("timetable_summary") in (None, "None")]
    paused = [d["dag_id"] for d in dags if d["is_paused"]]
    line = f"scheduled: {', '.join(scheduled) or 'none'}; on demand: {', '.join(manual) or 'none'}; "
    line += f"paused: {', '.join(paused) or 'none'}"
    return line + (f" (only {len(dags)} of {expected} DAGs parsed: see Import errors in the UI)"
                   if len(dags) < expected else "")


class EmbeddedAirflow:
    def __init__(self, settings: Settings, log_path: Path, base_env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.base_env = None if base_env is None else dict(base_env)
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return airflow_env(self.settings, self.base_env)

    def start(self, timeout: float = 420.0) -> subprocess.Popen[bytes]:
        env = self.env()
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

    def expected_dags(self) -> int:
        """How many DAGs Airflow should find: one per file of its DAGs folder."""
        folder = Path(self.env()["AIRFLOW__CORE__DAGS_FOLDER"])
        return len([p for p in folder.glob("*.py") if not p.name.startswith("_")])

    def settle_dags(self, api: AirflowAPI, timeout: float = 180.0) -> list[dict[str, Any]]:
        """Wait until every DAG file is parsed; then unpause Triage's DAGs once (a stack made when they were
        created paused) unless they should stay paused (TRIAGE_AIRFLOW_DAGS_PAUSED, or the user's own
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION). A DAG someone pauses afterwards stays paused."""
        want, deadline = self.expected_dags(), time.monotonic() + timeout
        dags = api.triage_dags()
        while len(dags) + api.get("/api/v2/importErrors")["total_entries"] < want and time.monotonic() < deadline:
            time.sleep(2.0)
            dags = api.triage_dags()
        mark = airflow_home(self.settings) / UNPAUSED_MARK
        if self.env()["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"].lower() == "true" or mark.exists():
            return dags
        for dag in dags:
            if dag["is_paused"]:
                dag.update(api.patch(f"/api/v2/dags/{dag['dag_id']}", {"is_paused": False}))
        if len(dags) >= want:
            mark.write_text("Triage's DAGs were unpaused once; from now on pause or unpause them in the UI.\n")
        return dags
