"""The metrics rollup: `dbt source freshness`, then `dbt build` of the `dbt/` project into `analytics`.

dbt runs as a subprocess of the ops environment with its connection derived from the same settings
as the rest of Triage (`dbt_env`). A failing model or test raises `RollupError` naming each failing
node and its message, read from dbt's `run_results.json` / `sources.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from triage.errors import TriageError
from triage.settings import PROJECT_ROOT, get_settings

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt"
_FAILED = {"error", "fail", "runtime error"}


class RollupError(TriageError, RuntimeError):
    """dbt failed; the message names the failing models / tests / sources and why."""


@dataclass
class DbtResult:
    command: str
    seconds: float
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in self.results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        return {"command": self.command, "seconds": round(self.seconds, 2), "counts": counts,
                "warnings": self.warnings}


def dbt_env(url: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for dbt: `profiles.yml` reads these DBT_* variables (socket folders work as host)."""
    settings = get_settings()
    info = conninfo_to_dict(url or settings.db_url())
    env = dict(os.environ if base is None else base)
    env.update({
        "DBT_TRIAGE_HOST": str(info.get("host") or "localhost"),
        "DBT_TRIAGE_PORT": str(info.get("port") or 5432),
        "DBT_TRIAGE_USER": str(info.get("user") or "postgres"),
        "DBT_ENV_SECRET_TRIAGE_PASSWORD": str(info.get("password") or ""),
        "DBT_TRIAGE_DBNAME": str(info.get("dbname") or "triage"),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_PROJECT_DIR": str(DBT_PROJECT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    })
    env.setdefault("DBT_TARGET_PATH", str(settings.state_dir / "dbt" / "target"))
    env.setdefault("DBT_LOG_PATH", str(settings.state_dir / "dbt" / "logs"))
    return env


def _dbt_bin() -> str:
    candidate = Path(sys.executable).parent / "dbt"
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(args: list[str], *, url: str | None = None, target_path: Path | None = None,
            timeout: float = 1800) -> DbtResult:
    """Run one dbt command; raise RollupError naming every failing node."""
    env = dbt_env(url)
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
        env["DBT_LOG_PATH"] = str(target_path / "logs")
    target = Path(env["DBT_TARGET_PATH"])
    artifact = target / ("sources.json" if args[:2] == ["source", "freshness"] else "run_results.json")
    artifact.unlink(missing_ok=True)  # never read a previous run's results
    started = time.monotonic()
    proc = subprocess.run([_dbt_bin(), *args, "--no-use-colors"], env=env, cwd=DBT_PROJECT_DIR,
                          capture_output=True, text=True, timeout=timeout, check=False)
    result = DbtResult(command="dbt " + " ".join(args), seconds=time.monotonic() - started)
    if artifact.exists():
        data = json.loads(artifact.read_text(encoding="utf-8"))
        result.results = [
            {"unique_id": r["unique_id"], "status": str(r["status"]), "message": r.get("message") or "",
             "failures": r.get("failures")}
            for r in data.get("results", [])
        ]
    failed = [r for r in result.results if r["status"] in _FAILED]
    result.warnings = [f"{r['unique_id']}: {r['message']}" for r in result.results if r["status"] == "warn"]
    if failed:
        named = "; ".join(f"{r['unique_id']} ({r['status']}): {r['message'][:300]}" for r in failed)
        raise RollupError(f"{result.command} failed: {named}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RollupError(f"{result.command} exited {proc.returncode}:\n{tail}")
    return result


def check_freshness(url: str | None = None, target_path: Path | None = None) -> DbtResult:
    """`dbt source freshness`: a source past its error_after fails (warnings are returned, not raised)."""
    return run_dbt(["source", "freshness"], url=url, target_path=target_path)


# Any stable 64-bit number: one `dbt build` at a time per database. Two builds replacing the same views
# (a scheduled and a manual metrics_rollup, or the CLI beside the DAG) deadlock in PostgreSQL.
BUILD_LOCK = 7_341_220_018


def build(url: str | None = None, target_path: Path | None = None, select: str | None = None) -> DbtResult:
    """`dbt build`: every model, data test and unit test, in dependency order; one build at a time."""
    from triage import db

    args = ["build"] + (["--select", select] if select else [])
    with db.connect(url or get_settings().db_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (BUILD_LOCK,))
        try:
            return run_dbt(args, url=url, target_path=target_path)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (BUILD_LOCK,))


def docs_generate(url: str | None = None, target_path: Path | None = None) -> DbtResult:
    """`dbt docs generate` (catalog.json and index.html in the target folder)."""
    return run_dbt(["docs", "generate"], url=url, target_path=target_path)


def run_rollup(url: str | None = None, target_path: Path | None = None) -> dict[str, Any]:
    """Freshness check, then build; the summary the DAG logs and returns."""
    freshness = check_freshness(url, target_path)
    built = build(url, target_path)
    return {"freshness": freshness.as_dict(), "build": built.as_dict()}
