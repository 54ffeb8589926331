"""`triage up | down | status`: start the parts in order, wait for health, stop by pid, report health.

State lives in `<state_dir>/run/stack.json`: the supervisor's pid and each part's pid, log and address.
Every part runs in its own process group, so stopping a part stops everything it spawned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from apps.stack import airflow as af
from apps.stack.kafka import EmbeddedKafka
from apps.stack.llm import EmbeddedLLM, check_drafting, check_llm, llm_available
from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import StackError, pid_alive, require_free_port, spawn, stop_group, wait_until
from triage import db
from triage.kafka_admin import check_broker, ensure_topics
from triage.names import TOPICS
from triage.settings import PROJECT_ROOT, Settings

Say = Callable[[str], None]
SIMULATOR_USER = "simulator"  # the console user the simulator's reviewer works as
ORDER = ("postgres", "kafka", "llm", "airflow", "worker", "drafting", "console", "simulator")


@dataclass
class StackState:
    path: Path

    def read(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return None
        except ValueError:
            return {"supervisor": -1, "parts": {}}

    def write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def state_for(settings: Settings) -> StackState:
    return StackState(settings.state_dir / "run" / "stack.json")


def check_worker(port: int, timeout: float = 2.0) -> str | None:
    """None when the worker's /health says it has joined its consumer group."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"health endpoint: {exc}"
    return None if body.get("joined") else f"not in its consumer group yet ({body.get('status', '?')})"


def check_console(port: int, timeout: float = 2.0) -> str | None:
    """None when the review console answers its health check."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            return None if resp.status == 200 else f"answered {resp.status}"
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        return f"health endpoint: {exc}"


def check_database(settings: Settings) -> str | None:
    try:
        with db.connect(settings.db_url(), timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except db.DatabaseUnavailable as exc:
        return str(exc)


def health(settings: Settings) -> dict[str, str | None]:
    """Each part's health: None = healthy, else the reason."""
    state = state_for(settings).read() or {"parts": {}}
    parts = state.get("parts", {})
    result: dict[str, str | None] = {
        "postgres": check_database(settings),
        "kafka": check_broker(settings.bootstrap_servers),
    }
    if settings.airflow and state.get("airflow", True):  # a stack started with --no-airflow has none
        result["airflow"] = af.check_airflow(settings.airflow_port)
    result["llm"] = _llm_health(settings)
    result["worker"] = check_worker(settings.worker_port)
    result["drafting"] = _drafting_health(settings)
    result["console"] = check_console(settings.console_port)
    if state.get("simulator", True):  # a stack started with --no-simulator has none
        sim = parts.get("simulator")
        result["simulator"] = None if sim and pid_alive(int(sim["pid"])) else "not running"
    return result


def _llm_health(settings: Settings) -> str | None:
    """The drafting backend: an LLM server when one is configured or installed; else templates (healthy)."""
    url = settings.llm_url
    return None if url is None else check_llm(url)


def _drafting_health(settings: Settings) -> str | None:
    """None when the drafting worker answers; breakers that are not closed are named as a note, not a failure."""
    page = check_drafting(settings.drafting_port)
    return page if isinstance(page, str) else None


def drafting_summary(settings: Settings) -> str:
    """One line for `triage status`: drafting mode, breaker states, outbox deliveries."""
    answer = check_drafting(settings.drafting_port)
    if isinstance(answer, str):
        return ""
    page: dict[str, Any] = dict(answer)
    llm = page.get("llm") or {}
    breakers = ", ".join(f"{b.get('name')}={b.get('state')}" for b in page.get("breakers") or []) or "none yet"
    outbox = page.get("outbox") or {}
    delivered = sum((outbox.get("delivered") or {}).values())
    parked = sum((outbox.get("parked") or {}).values())
    mode = llm.get("mode", "?") if isinstance(llm, dict) else "?"
    idle = page.get("routes_without_effect") or []
    warning = f"; WARNING: no adapter for {', '.join(idle)}" if idle else ""
    return f"{mode}; breakers: {breakers}; delivered {delivered}, parked {parked}{warning}"


def llm_line(settings: Settings) -> str:
    url = settings.llm_url
    if url is None:
        return "template drafter (no LLM server: `make llm` installs the local one, or set TRIAGE_LLM_BASE_URL)"
    return url


class Supervisor:
    def __init__(self, settings: Settings, say: Say = print, simulate: bool = True) -> None:
        self.settings = settings
        self.say = say
        self.simulate = simulate
        self.state = state_for(settings)
        self.logs = settings.state_dir / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.where: dict[str, str] = {}
        self._stopping = False

    def preflight(self) -> None:
        """Refuse twins, stale state and busy ports before starting anything."""
        prior = self.state.read()
        if prior is not None:
            pid = int(prior.get("supervisor", -1))
            if pid > 0 and pid_alive(pid):
                raise StackError(
                    f"Triage is already running (supervisor pid {pid}); "
                    "see `triage status`, or stop it with `triage down`"
                )
            raise StackError(
                f"stale pid file {self.state.path} (supervisor pid {pid} is gone); "
                "run `triage down` to stop any leftover parts and remove it"
            )
        s = self.settings
        if s.embedded_kafka:
            require_free_port(s.kafka_port, "the embedded Kafka broker", "TRIAGE_KAFKA_PORT")
        if s.airflow:
            require_free_port(s.airflow_port, "Airflow", "TRIAGE_AIRFLOW_PORT")
        require_free_port(s.worker_port, "the stream worker", "TRIAGE_WORKER_PORT")
        require_free_port(s.drafting_port, "the drafting worker", "TRIAGE_DRAFTING_PORT")
        require_free_port(s.console_port, "the review console", "TRIAGE_CONSOLE_PORT")
        if not s.stream_python.exists():
            raise StackError(f"stream environment not found at {s.stream_python}; run `make install`")

    def _record(self) -> None:
        parts = {
            name: {"pid": p.pid, "log": str(self.logs / f"{name}.log"), "where": self.where.get(name, "")}
            for name, p in self.procs.items()
        }
        self.state.write(
            {
                "supervisor": os.getpid(),
                "started_at": datetime.now(UTC).isoformat(),
                "airflow": self.settings.airflow,
                "simulator": self.simulate,
                "parts": parts,
            }
        )

    def start_postgres(self) -> None:
        s = self.settings
        if s.embedded_postgres:
            pg = EmbeddedPostgres(s.pg_data_dir, s.pg_port, self.logs / "postgres.log")
            self.procs["postgres"] = pg.start()
            self._record()
            db.ensure_database(pg.url(), "triage")
            db.ensure_database(pg.url(), "airflow")
        elif (reason := check_database(s)) is not None:
            raise StackError(reason)
        self.where["postgres"] = db.redact(s.db_url())
        applied = db.migrate(s.db_url())
        self.say(
            f"  postgres   ready   {self.where['postgres']}"
            + (f"  (migrated: {', '.join(applied)})" if applied else "")
        )

    def start_kafka(self) -> None:
        s = self.settings
        if s.embedded_kafka:
            broker = EmbeddedKafka(s.kafka_port, self.logs / "kafka.log")
            self.procs["kafka"] = broker.start()
            self._record()
        elif (reason := check_broker(s.bootstrap_servers, timeout=5)) is not None:
            raise StackError(
                f"cannot reach Kafka at {s.bootstrap_servers} ({reason}); "
                "start it or set KAFKA_BOOTSTRAP_SERVERS to a reachable broker"
            )
        ensure_topics(s.bootstrap_servers, TOPICS, s.kafka_partitions)
        self.where["kafka"] = s.bootstrap_servers
        self.say(f"  kafka      ready   {s.bootstrap_servers}  topics: {', '.join(TOPICS)}")

    def ensure_model(self) -> None:
        """Train and register a champion on simulated tickets when the registry has none."""
        from apps.bootstrap import ensure_champion

        mv = ensure_champion(self.settings, say=self.say)
        self.say(f"  model      ready   {mv.name} v{mv.version} ({mv.status})")

    def start_llm(self) -> None:
        """The local llama.cpp server when `make llm` installed it; otherwise drafts come from templates."""
        if llm_available(self.settings):
            server = EmbeddedLLM(self.settings, self.logs / "llm.log")
            self.procs["llm"] = server.start()
            self._record()
        elif self.settings.llm_url is not None and (reason := check_llm(self.settings.llm_url)) is not None:
            raise StackError(
                f"cannot reach the LLM server at {self.settings.llm_url} ({reason}); "
                "start it or unset TRIAGE_LLM_BASE_URL to use template drafts"
            )
        self.where["llm"] = llm_line(self.settings)
        self.say(f"  llm        ready   {self.where['llm']}")

    def start_airflow(self) -> None:
        self.say("  airflow    starting (first start migrates its database: a few minutes)")
        flow = af.EmbeddedAirflow(self.settings, self.logs / "airflow.log")
        self.procs["airflow"] = flow.start()
        self.where["airflow"] = f"http://127.0.0.1:{self.settings.airflow_port}"
        self._record()
        self.say(f"  airflow    ready   {self.where['airflow']}  login: {af.login(self.settings)}")
        self.say(f"  dags       {self._dags_line(flow)}")

    def _dags_line(self, flow: af.EmbeddedAirflow) -> str:
        """Which DAGs are scheduled (read back from Airflow's REST API, after the one-time unpause)."""
        try:
            api = af.AirflowAPI.for_settings(self.settings)
            try:
                return af.dags_line(flow.settle_dags(api), flow.expected_dags())
            finally:
                api.close()
        except (StackError, httpx.HTTPError, KeyError) as exc:  # the stack works without this line
            return f"could not read the DAGs from Airflow's API ({exc}); see the UI"

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DATABASE_URL"] = self.settings.db_url()
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.settings.bootstrap_servers
        env["TRIAGE_STATE_DIR"] = str(self.settings.state_dir)
        return env

    def start_worker(self) -> None:
        s = self.settings
        log = self.logs / "worker.log"
        proc = spawn([str(s.stream_python), "-m", "streams", "worker"], log, env=self.child_env(), cwd=PROJECT_ROOT)
        self.procs["worker"] = proc
        self._record()
        wait_until(lambda: check_worker(s.worker_port), 180, "stream worker", log, proc, interval=1.0)
        self.where["worker"] = f"http://127.0.0.1:{s.worker_port}/metrics"
        self._record()
        self.say(f"  worker     ready   {self.where['worker']}")

    def start_drafting(self) -> None:
        """The drafting worker: LLM drafts (or templates), guardrails, budgets, outbox dispatch."""
        s = self.settings
        log = self.logs / "drafting.log"
        argv = [str(s.stream_python), "-m", "streams.drafting_worker", "--web-port", str(s.drafting_port)]
        self.procs["drafting"] = proc = spawn(argv, log, env=self.child_env(), cwd=PROJECT_ROOT)
        self._record()
        wait_until(lambda: _drafting_health(s), 180, "drafting worker", log, proc, interval=1.0)
        self.where["drafting"] = f"http://127.0.0.1:{s.drafting_port}/drafting"
        self._record()
        self.say(f"  drafting   ready   {self.where['drafting']}  ({llm_line(s)})")

    def start_console(self) -> None:
        """The review console (ops environment): where people work the queued tickets."""
        s = self.settings
        log = self.logs / "console.log"
        triage_bin = str(Path(sys.executable).parent / "triage")
        self.procs["console"] = proc = spawn([triage_bin, "console"], log, env=self.child_env(), cwd=PROJECT_ROOT)
        self._record()
        wait_until(lambda: check_console(s.console_port), 120, "review console", log, proc, interval=0.5)
        self.where["console"] = f"http://127.0.0.1:{s.console_port}"
        self._record()
        self.say(f"  console    ready   {self.where['console']}  (people: triage users add NAME --role reviewer "
                 "--password-stdin)")

    def start_simulator(self) -> None:
        """The simulator; its reviewer works queued tickets through the console as user 'simulator'."""
        from apps.console.users import service_token

        s = self.settings
        log = self.logs / "simulator.log"
        triage_bin = str(Path(sys.executable).parent / "triage")
        env = self.child_env()
        env["TRIAGE_SIMULATOR_CONSOLE_TOKEN"] = service_token(s.db_url(), SIMULATOR_USER)
        self.procs["simulator"] = spawn(
            [triage_bin, "simulate", "--rate", str(s.simulator_rate)], log, env=env, cwd=PROJECT_ROOT
        )
        self.where["simulator"] = f"{s.simulator_rate:g} tickets/s -> tickets.raw"
        self._record()
        self.say(f"  simulator  running {self.where['simulator']}  (log: {log})")

    def up(self, block: bool = True) -> None:
        self.preflight()
        self.logs.mkdir(parents=True, exist_ok=True)
        self._record()
        started = time.monotonic()
        self.say(
            "Starting Triage on " + ("embedded defaults" if self.settings.embedded_postgres else "external services")
        )
        try:
            self.start_postgres()
            self.start_kafka()
            self.ensure_model()
            self.start_llm()
            if self.settings.airflow:
                self.start_airflow()
            self.start_worker()
            self.start_drafting()
            self.start_console()
            if self.simulate:
                self.start_simulator()
        except BaseException:
            self.stop_all()
            raise
        self.say(
            f"All parts healthy in {time.monotonic() - started:.0f}s. Logs: {self.logs}. Ctrl-C or `triage down` stops."
        )
        if block:
            self.wait()

    def wait(self) -> None:
        def _stop(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _stop)
        reported: set[str] = set()
        try:
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None and name not in reported:
                        reported.add(name)
                        self.say(f"{name} exited with code {proc.returncode}; see {self.logs / (name + '.log')}")
                time.sleep(1)
        except KeyboardInterrupt:
            self.say("Stopping Triage...")
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for name in reversed(ORDER):
            proc = self.procs.get(name)
            if proc is not None:
                sig = signal.SIGINT if name == "postgres" else signal.SIGTERM  # SIGINT = fast shutdown
                stop_group(proc.pid, sig)
                proc.poll()
                self.say(f"  {name} stopped")
        self.state.remove()


def down(settings: Settings, say: Say = print, timeout: float = 60.0) -> int:
    """Stop what `triage up` started; return the number of parts stopped."""
    state = state_for(settings)
    data = state.read()
    if data is None:
        say("Triage is not running (no pid file).")
        return 0
    sup = int(data.get("supervisor", -1))
    if sup > 0 and pid_alive(sup):
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(sup):
            time.sleep(0.2)
    stopped = 0
    for name in reversed(ORDER):
        part = data.get("parts", {}).get(name)
        if part and pid_alive(int(part["pid"])):
            stop_group(int(part["pid"]), signal.SIGINT if name == "postgres" else signal.SIGTERM)
            stopped += 1
            say(f"  {name} stopped (pid {part['pid']})")
    if sup > 0 and pid_alive(sup):
        os.kill(sup, signal.SIGKILL)
    state.remove()
    say("Triage stopped.")
    return stopped
