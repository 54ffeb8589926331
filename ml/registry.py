"""Model registry: versions and statuses in Postgres, artifacts in the model store.

Artifacts are copied atomically (temp folder, then rename) and fingerprinted with sha256;
loading re-checks it. Exactly one champion per name is enforced by a partial unique index;
status changes take a per-name advisory lock so concurrent promotions serialise, and every
change writes a `triage.model_events` row in the same transaction.
psycopg + stdlib + triage only: importable in the stream environment.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ml import layout
from triage import db
from triage.errors import TriageError
from triage.labels import DEPLOYMENT_MODES
from triage.names import T_DEPLOYMENTS, T_MODEL_EVENTS, T_MODEL_VERSIONS, V_TAXONOMY_LABELS, qualified
from triage.policy import PolicyError, bind, load_policy
from triage.schemas import Deployment, ModelVersion
from triage.settings import get_settings
from triage.taxonomy import Taxonomy, from_model_dir

MV = qualified(T_MODEL_VERSIONS)
EV = qualified(T_MODEL_EVENTS)
DEP = qualified(T_DEPLOYMENTS)
_COLUMNS = (
    "name, version, status, heads, base_model, data_fingerprint, metrics, artifact_path, "
    "artifact_sha256, created_at, updated_at, changed_by, reason, taxonomy"
)
_DEPLOYMENT_END_STATUSES = ("promoted", "rolled_back", "ended")


class RegistryError(TriageError, ValueError):
    """A registry operation that cannot be done as asked; the message says why and what to do."""


class ArtifactMismatch(RegistryError):
    """The files on disk are not the ones registered (sha256 differs)."""


def sha256_dir(path: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _lock(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('triage.model:' || %s))", (name,))


def _row_to_mv(row: dict[str, Any]) -> ModelVersion:
    return ModelVersion.model_validate(row)


def _event(conn: psycopg.Connection[Any], name: str, version: int, from_status: str | None, to_status: str,
           changed_by: str, reason: str, details: dict[str, Any] | None = None) -> None:
    conn.execute(
        f"INSERT INTO {EV} (name, version, from_status, to_status, changed_by, reason, details) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (name, version, from_status, to_status, changed_by, reason, Jsonb(details or {})),
    )


def _set_status(conn: psycopg.Connection[Any], name: str, version: int, from_status: str | None, to_status: str,
                changed_by: str, reason: str) -> None:
    conn.execute(
        f"UPDATE {MV} SET status = %s, updated_at = now(), changed_by = %s, reason = %s "
        "WHERE name = %s AND version = %s",
        (to_status, changed_by, reason, name, version),
    )
    _event(conn, name, version, from_status, to_status, changed_by, reason)


def _fetch(conn: psycopg.Connection[Any], name: str, version: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {MV} WHERE name = %s AND version = %s FOR UPDATE",
                       (name, version)).fetchone()
    if row is None:
        raise RegistryError(f"model {name} version {version} is not registered; see `triage models list`")
    return dict(row)


def _champion_row(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM {MV} WHERE name = %s AND status = 'champion' FOR UPDATE",
                       (name,)).fetchone()
    return dict(row) if row else None


def register(url: str | None, model_dir: Path, *, name: str, status: str = "candidate", changed_by: str,
             reason: str, metrics: dict[str, Any] | None = None, models_dir: Path | None = None) -> ModelVersion:
    """Copy `model_dir` into the store as the next version of `name` and record it.

    `status` may be candidate or champion (champion retires the previous one in the same transaction).
    """
    model_dir = Path(model_dir)
    layout.check_model_dir(model_dir)
    if status not in ("candidate", "champion"):
        raise RegistryError(f"register status {status!r}: use candidate (then promote) or champion")
    heads = layout.read_heads(model_dir)
    taxonomy = from_model_dir(model_dir, heads)
    train_args: dict[str, Any] = {}
    if (model_dir / layout.TRAINING_ARGS).is_file():
        train_args = layout.read_json(model_dir, layout.TRAINING_ARGS)
    if metrics is None:
        metrics = layout.read_json(model_dir, layout.METRICS) if (model_dir / layout.METRICS).is_file() else {}
    store = Path(models_dir or get_settings().models_dir) / name
    store.mkdir(parents=True, exist_ok=True)
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            row = conn.execute(f"SELECT coalesce(max(version), 0) + 1 AS v FROM {MV} WHERE name = %s",
                               (name,)).fetchone()
            version = int(row["v"]) if row else 1
            final = store / str(version)
            if final.exists():  # left by a crashed run whose transaction never committed
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=store))
            try:
                shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
                digest = sha256_dir(tmp)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            try:
                conn.execute(
                    f"INSERT INTO {MV} (name, version, status, heads, base_model, data_fingerprint, metrics, "
                    "training_args, artifact_path, artifact_sha256, changed_by, reason, taxonomy) "
                    "VALUES (%s, %s, 'candidate', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (name, version, Jsonb(heads), str(train_args.get("base", "unknown")),
                     str(train_args.get("data_fingerprint", "unknown")), Jsonb(_jsonable(metrics)),
                     Jsonb(_jsonable(train_args)), str(final.resolve()), digest, changed_by, reason,
                     Jsonb(taxonomy.to_json())),
                )
                _event(conn, name, version, None, "candidate", changed_by, reason, {"sha256": digest})
                if status == "champion":
                    _promote_locked(conn, name, version, changed_by=changed_by, reason=reason)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
        return _row_to_mv(_fetch(conn, name, version))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def get(url: str | None, name: str, version: int) -> ModelVersion:
    with db.connect(url) as conn:
        row = conn.execute(f"SELECT {_COLUMNS} FROM {MV} WHERE name = %s AND version = %s",
                           (name, version)).fetchone()
    if row is None:
        raise RegistryError(f"model {name} version {version} is not registered; see `triage models list`")
    return _row_to_mv(dict(row))


def list_versions(url: str | None, name: str) -> list[ModelVersion]:
    with db.connect(url) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM {MV} WHERE name = %s ORDER BY version", (name,)).fetchall()
    return [_row_to_mv(dict(r)) for r in rows]


def champion(url: str | None, name: str) -> ModelVersion | None:
    with db.connect(url) as conn:
        row = conn.execute(f"SELECT {_COLUMNS} FROM {MV} WHERE name = %s AND status = 'champion'",
                           (name,)).fetchone()
    return _row_to_mv(dict(row)) if row else None


_LIVE_LABELS = (
    f"SELECT head, array_agg(DISTINCT label ORDER BY label) AS labels FROM {qualified(V_TAXONOMY_LABELS)} "
    "WHERE status IN ('champion', 'canary') GROUP BY head"
)


def live_labels(url: str | None) -> dict[str, list[str]]:
    """Head -> every label a serving or canary model knows (intent includes its out-of-scope label).

    Empty when no model is live. What a reviewer's label is checked against (the quality suite, the console).
    """
    with db.connect(url) as conn:
        return {r["head"]: list(r["labels"]) for r in conn.execute(_LIVE_LABELS).fetchall()}


def taxonomy_of(mv: ModelVersion | dict[str, Any]) -> Taxonomy:
    """The taxonomy a model version was trained on (derived from its label maps for older versions)."""
    row = mv.model_dump() if isinstance(mv, ModelVersion) else mv
    if row.get("taxonomy"):
        return Taxonomy.from_json(row["taxonomy"])
    return Taxonomy.from_heads(row["heads"])


def check_policy(row: ModelVersion | dict[str, Any], what: str, policy_path: Path | None = None) -> None:
    """Refuse (RegistryError) to let `row` act when the active policy names labels its taxonomy lacks."""
    path = Path(policy_path or get_settings().policy_file)
    label = f"{row['name']} v{row['version']}" if isinstance(row, dict) else f"{row.name} v{row.version}"
    try:
        bind(load_policy(path), [(f"model {label}", taxonomy_of(row))])
    except PolicyError as exc:
        raise RegistryError(f"refusing to {what} {label}: the active policy would break: {exc}") from None


def _promote_locked(conn: psycopg.Connection[Any], name: str, version: int, *, changed_by: str,
                    reason: str) -> None:
    target = _fetch(conn, name, version)
    check_policy(target, "promote")
    if target["status"] == "champion":
        raise RegistryError(f"model {name} version {version} is already the champion")
    if target["status"] == "rejected":
        raise RegistryError(f"model {name} version {version} was rejected; register a new version instead")
    old = _champion_row(conn, name)
    if old is not None:
        _set_status(conn, name, old["version"], "champion", "retired", changed_by, f"replaced by v{version}: {reason}")
    _set_status(conn, name, version, target["status"], "champion", changed_by, reason)
    conn.execute(
        f"UPDATE {DEP} SET status = 'promoted', ended_at = now(), reason = %s "
        "WHERE name = %s AND status = 'active' AND challenger_version = %s",
        (reason, name, version),
    )
    conn.execute(  # a deployment against the old champion no longer makes sense
        f"UPDATE {DEP} SET status = 'ended', ended_at = now(), reason = %s WHERE name = %s AND status = 'active'",
        (f"champion changed to v{version}", name),
    )


def promote(url: str | None, name: str, version: int, *, changed_by: str, reason: str) -> ModelVersion:
    """Make `version` the champion; the old champion is retired in the same transaction."""
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            _promote_locked(conn, name, version, changed_by=changed_by, reason=reason)
        return _row_to_mv(_fetch(conn, name, version))


def rollback(url: str | None, name: str, *, to_version: int | None = None, changed_by: str,
             reason: str) -> ModelVersion:
    """Retire the champion and restore `to_version` (default: the champion before it)."""
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            current = _champion_row(conn, name)
            if current is None:
                raise RegistryError(
                    f"model {name} has no champion to roll back; promote one with `triage models promote`")
            if to_version is None:
                row = conn.execute(
                    f"SELECT e.version FROM {EV} e JOIN {MV} m ON m.name = e.name AND m.version = e.version "
                    "WHERE e.name = %s AND e.to_status = 'champion' AND e.version <> %s "
                    "AND m.status IN ('retired', 'candidate', 'canary') ORDER BY e.id DESC LIMIT 1",
                    (name, current["version"]),
                ).fetchone()
                if row is None:
                    raise RegistryError(
                        f"model {name} has no earlier champion to roll back to; pass --to VERSION")
                to_version = int(row["version"])
            if to_version == current["version"]:
                raise RegistryError(f"model {name} version {to_version} is already the champion")
            _set_status(conn, name, current["version"], "champion", "retired", changed_by, f"rolled back: {reason}")
            _promote_locked(conn, name, to_version, changed_by=changed_by, reason=f"rollback: {reason}")
        return _row_to_mv(_fetch(conn, name, to_version))


def reject(url: str | None, name: str, version: int, *, changed_by: str, reason: str) -> ModelVersion:
    """Mark a candidate or canary as rejected (a champion must be replaced first)."""
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            row = _fetch(conn, name, version)
            if row["status"] == "champion":
                raise RegistryError(
                    f"model {name} version {version} is the champion; promote or roll back to another version first")
            if row["status"] == "rejected":
                raise RegistryError(f"model {name} version {version} is already rejected")
            _set_status(conn, name, version, row["status"], "rejected", changed_by, reason)
            conn.execute(
                f"UPDATE {DEP} SET status = 'rolled_back', ended_at = now(), reason = %s "
                "WHERE name = %s AND status = 'active' AND challenger_version = %s",
                (reason, name, version),
            )
        return _row_to_mv(_fetch(conn, name, version))


def verified_path(mv: ModelVersion) -> Path:
    """The artifact folder of `mv`, after checking its sha256; raises ArtifactMismatch otherwise."""
    path = Path(mv.artifact_path)
    if not path.is_dir():
        raise ArtifactMismatch(f"artifact folder {path} of {mv.name} v{mv.version} is missing; re-register the model")
    actual = sha256_dir(path)
    if actual != mv.artifact_sha256:
        raise ArtifactMismatch(
            f"artifact {path} of {mv.name} v{mv.version} has sha256 {actual[:12]}..., registered "
            f"{mv.artifact_sha256[:12]}...: the files were changed; re-register or roll back"
        )
    return path


_DEP_COLUMNS = "id, name, champion_version, challenger_version, mode, percent, started_at, step_started_at"


def start_deployment(url: str | None, name: str, challenger_version: int, mode: str, percent: float, *,
                     changed_by: str, reason: str) -> Deployment:
    """Run `challenger_version` beside the champion (canary: acts for `percent` of tickets; shadow: predicts)."""
    if mode not in DEPLOYMENT_MODES:
        raise RegistryError(f"deployment mode {mode!r}: use one of {', '.join(DEPLOYMENT_MODES)}")
    if not 0.0 <= percent <= 100.0:
        raise RegistryError(f"deployment percent {percent}: use a number from 0 to 100")
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            champ = _champion_row(conn, name)
            if champ is None:
                raise RegistryError(f"model {name} has no champion; promote one before starting a {mode}")
            chal = _fetch(conn, name, challenger_version)
            if chal["status"] not in ("candidate", "canary"):
                raise RegistryError(
                    f"model {name} version {challenger_version} is {chal['status']}; only a candidate can be deployed")
            if mode == "canary":  # a canary acts on its share: the policy must hold for it too
                check_policy(chal, "start a canary of")
            active = conn.execute(f"SELECT challenger_version FROM {DEP} WHERE name = %s AND status = 'active'",
                                  (name,)).fetchone()
            if active is not None:
                raise RegistryError(
                    f"model {name} already has an active deployment of v{active['challenger_version']}; end it first")
            row = conn.execute(
                f"INSERT INTO {DEP} (name, champion_version, challenger_version, mode, percent, reason) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_DEP_COLUMNS}",
                (name, champ["version"], challenger_version, mode, percent, reason),
            ).fetchone()
            if mode == "canary" and chal["status"] != "canary":
                _set_status(conn, name, challenger_version, chal["status"], "canary", changed_by, reason)
        assert row is not None  # INSERT ... RETURNING gives the row
        return Deployment.model_validate(dict(row))


def end_deployment(url: str | None, name: str, status: str, reason: str, *,
                   changed_by: str = "deployment") -> Deployment | None:
    """End the active deployment: `promoted` makes the challenger champion, `rolled_back` rejects it,
    `ended` returns a canary to candidate. Returns the ended deployment, or None if none was active."""
    if status not in _DEPLOYMENT_END_STATUSES:
        raise RegistryError(f"deployment end status {status!r}: use one of {', '.join(_DEPLOYMENT_END_STATUSES)}")
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            row = conn.execute(
                f"SELECT {_DEP_COLUMNS} FROM {DEP} WHERE name = %s AND status = 'active' FOR UPDATE",
                (name,)).fetchone()
            if row is None:
                return None
            dep = Deployment.model_validate(dict(row))
            chal = _fetch(conn, name, dep.challenger_version)
            if status == "promoted":
                _promote_locked(conn, name, dep.challenger_version, changed_by=changed_by, reason=reason)
            elif status == "rolled_back" and chal["status"] in ("candidate", "canary"):
                _set_status(conn, name, dep.challenger_version, chal["status"], "rejected", changed_by, reason)
            elif status == "ended" and chal["status"] == "canary":
                _set_status(conn, name, dep.challenger_version, "canary", "candidate", changed_by, reason)
            conn.execute(
                f"UPDATE {DEP} SET status = %s, ended_at = now(), reason = %s WHERE name = %s AND status = 'active'",
                (status, reason, name),
            )
        return dep


def set_percent(url: str | None, name: str, percent: float, *, changed_by: str, reason: str) -> Deployment:
    """Ramp the active canary to `percent` in place: same deployment, a new step from now.

    Workers see the new share at their next registry poll and keep the loaded challenger; there is no
    moment without a deployment, as there would be when ending it and starting another.
    """
    if not 0.0 <= percent <= 100.0:
        raise RegistryError(f"deployment percent {percent}: use a number from 0 to 100")
    with db.connect(url) as conn:
        with conn.transaction():
            _lock(conn, name)
            row = conn.execute(
                f"SELECT {_DEP_COLUMNS} FROM {DEP} WHERE name = %s AND status = 'active' FOR UPDATE",
                (name,)).fetchone()
            if row is None:
                raise RegistryError(f"model {name} has no active deployment; start one with `triage canary start`")
            if row["mode"] != "canary":
                raise RegistryError(f"the active deployment of {name} is a {row['mode']}: only a canary has a share")
            ramped = conn.execute(f"UPDATE {DEP} SET percent = %s, step_started_at = now(), reason = %s "
                                  f"WHERE name = %s AND status = 'active' RETURNING {_DEP_COLUMNS}",
                                  (percent, reason, name)).fetchone()
            _event(conn, name, row["challenger_version"], "canary", "canary", changed_by,
                   f"canary share {row['percent']:g}% -> {percent:g}%: {reason}",
                   {"step": "ramp", "from_percent": row["percent"], "to_percent": percent})
        assert ramped is not None  # the row is locked above
        return Deployment.model_validate(dict(ramped))


def active_deployment(url: str | None, name: str) -> Deployment | None:
    """The deployment running beside the champion of `name`, or None."""
    with db.connect(url) as conn:
        row = conn.execute(
            f"SELECT {_DEP_COLUMNS} FROM {DEP} WHERE name = %s AND status = 'active'", (name,)).fetchone()
    return Deployment.model_validate(dict(row)) if row else None


def record_evaluation(url: str | None, name: str, version: int, *, reason: str, details: dict[str, Any],
                      changed_by: str) -> None:
    """A model event that keeps the version's status and carries an evaluation's numbers (a canary step)."""
    with db.connect(url) as conn:
        row = _fetch(conn, name, version)
        _event(conn, name, version, row["status"], row["status"], changed_by, reason, details)


def events(url: str | None, name: str) -> list[dict[str, Any]]:
    """Every status change of `name`, oldest first."""
    with db.connect(url) as conn:
        rows = conn.execute(
            f"SELECT version, from_status, to_status, changed_by, reason, details, at FROM {EV} WHERE name = %s "
            "ORDER BY id",
            (name,)).fetchall()
    return [dict(r) for r in rows]
