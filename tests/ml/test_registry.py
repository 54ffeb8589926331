"""Registry invariants against the real embedded PostgreSQL."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from ml import registry
from ml.registry import ArtifactMismatch, RegistryError
from triage import db
from triage.settings import get_settings
from triage.taxonomy import Taxonomy, bank

pytestmark = pytest.mark.integration
NAME = "clf"


def _register(url: str, model: Path, store: Path, **kw: object) -> registry.ModelVersion:
    return registry.register(url, model, name=NAME, changed_by="test", reason="test", models_dir=store,
                             **kw)  # type: ignore[arg-type]


def test_register_copies_atomically_and_fingerprints(db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    mv = _register(db_url, tiny_model, tmp_path)
    assert mv.version == 1 and mv.status == "candidate"
    assert Path(mv.artifact_path) == (tmp_path / NAME / "1").resolve()
    assert registry.verified_path(mv) == Path(mv.artifact_path)
    assert mv.heads["intent"][0] == "card_arrival"
    assert not [p for p in (tmp_path / NAME).iterdir() if p.name.startswith(".tmp")]
    assert _register(db_url, tiny_model, tmp_path).version == 2
    with db.connect(db_url) as conn:
        events = conn.execute("SELECT version, to_status FROM triage.model_events ORDER BY id").fetchall()
    assert [(e["version"], e["to_status"]) for e in events] == [(1, "candidate"), (2, "candidate")]


def test_sha256_mismatch_is_refused(db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    mv = _register(db_url, tiny_model, tmp_path)
    (Path(mv.artifact_path) / "thresholds.json").write_text('{"intent": 0.0, "urgency": null}\n')
    with pytest.raises(ArtifactMismatch, match="sha256"):
        registry.verified_path(mv)


def test_one_champion_and_rollback(db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    v1 = _register(db_url, tiny_model, tmp_path, status="champion")
    v2 = _register(db_url, tiny_model, tmp_path)
    assert registry.champion(db_url, NAME) == registry.get(db_url, NAME, v1.version)
    registry.promote(db_url, NAME, v2.version, changed_by="test", reason="better")
    statuses = {m.version: m.status for m in registry.list_versions(db_url, NAME)}
    assert statuses == {1: "retired", 2: "champion"}
    back = registry.rollback(db_url, NAME, changed_by="test", reason="worse live")
    assert back.version == 1 and back.status == "champion"
    assert registry.get(db_url, NAME, 2).status == "retired"
    with pytest.raises(RegistryError, match="champion"):
        registry.reject(db_url, NAME, 1, changed_by="test", reason="no")
    # The database itself refuses a second champion, whatever the code does.
    with db.connect(db_url) as conn, pytest.raises(Exception, match="one_champion"):
        conn.execute("UPDATE triage.model_versions SET status = 'champion' WHERE name = %s", (NAME,))


def test_concurrent_promotes_leave_one_champion(db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    versions = [_register(db_url, tiny_model, tmp_path).version for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(versions))

    def go(v: int) -> None:
        barrier.wait()
        try:
            registry.promote(db_url, NAME, v, changed_by=f"t{v}", reason="race")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    statuses = [m.status for m in registry.list_versions(db_url, NAME)]
    assert statuses.count("champion") == 1 and statuses.count("retired") == 3
    with db.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) AS n FROM triage.model_events WHERE to_status = 'champion'").fetchone()
    assert n["n"] == 4


def test_deployment_lifecycle(db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    _register(db_url, tiny_model, tmp_path, status="champion")
    v2 = _register(db_url, tiny_model, tmp_path)
    dep = registry.start_deployment(db_url, NAME, v2.version, "canary", 10.0, changed_by="dag", reason="try")
    assert registry.active_deployment(db_url, NAME) == dep
    assert registry.get(db_url, NAME, v2.version).status == "canary"
    with pytest.raises(RegistryError, match="active deployment"):
        registry.start_deployment(db_url, NAME, v2.version, "shadow", 0.0, changed_by="dag", reason="again")
    registry.end_deployment(db_url, NAME, "promoted", "canary better")
    assert registry.active_deployment(db_url, NAME) is None
    assert registry.champion(db_url, NAME).version == v2.version  # type: ignore[union-attr]
    v3 = _register(db_url, tiny_model, tmp_path)
    registry.start_deployment(db_url, NAME, v3.version, "shadow", 0.0, changed_by="dag", reason="try")
    registry.end_deployment(db_url, NAME, "rolled_back", "worse")
    assert registry.get(db_url, NAME, v3.version).status == "rejected"


def _with_taxonomy(model: Path, tmp_path: Path, taxonomy: Taxonomy) -> Path:
    """A copy of `model` that says it was trained on `taxonomy` (its label maps stay the bank's)."""
    out = tmp_path / f"model-{taxonomy.name}"
    shutil.copytree(model, out)
    (out / "taxonomy.json").write_text(json.dumps(taxonomy.to_json()))
    return out


def test_a_model_knows_its_taxonomy_and_a_promotion_that_breaks_the_policy_is_refused(
        db_url: str, tiny_model: Path, tmp_path: Path) -> None:
    champ = _register(db_url, tiny_model, tmp_path, status="champion")
    stored = registry.taxonomy_of(champ)  # stored with the version, not read from code
    assert stored == bank() and stored.intent_names == bank().intent_names  # in class-index order
    desk = Taxonomy(name="saas-desk", urgencies=["low", "high"], intents={"billing": {}, "login_problem": {}})
    other = _register(db_url, _with_taxonomy(tiny_model, tmp_path, desk), tmp_path / "store")
    assert other.taxonomy is not None and other.taxonomy["name"] == "saas-desk"
    policy = get_settings().policy_file
    for attempt in (lambda: registry.promote(db_url, NAME, other.version, changed_by="test", reason="try"),
                    lambda: registry.start_deployment(db_url, NAME, other.version, "canary", 10.0,
                                                      changed_by="test", reason="try")):
        with pytest.raises(RegistryError) as info:
            attempt()
        msg = str(info.value)
        assert msg.startswith("refusing to ") and f"{NAME} v{other.version}: the active policy would break: " \
            f"{policy}: line " in msg, msg
        assert "unknown intent 'card_arrival'" in msg and "knows: billing, login_problem" in msg, msg
    assert registry.champion(db_url, NAME) == registry.get(db_url, NAME, champ.version)
    # A shadow only predicts: it routes nothing, so the policy need not fit it.
    dep = registry.start_deployment(db_url, NAME, other.version, "shadow", 10.0, changed_by="test", reason="look")
    assert dep.mode == "shadow"
    # Against a policy written for the desk, the same promotion goes through.
    desk_policy = tmp_path / "desk-policy.yaml"
    desk_policy.write_text('version: "1"\nthresholds:\n  default: {auto_resolve: 0.9, draft_for_review: 0.6}\n'
                           "rules:\n  - id: bills\n    when: {intent: [billing]}\n    route: human_queue\n"
                           "default: {id: fallback, route: human_queue}\n")
    registry.check_policy(registry.get(db_url, NAME, other.version), "promote", desk_policy)
    with pytest.raises(RegistryError, match=r"desk-policy.yaml: line 6: rules.0.when.intent.0: unknown intent "
                                            r"'billing'; model clf v1 knows: card_arrival, card_lost_or_stolen, "
                                            r".* \(18 in all\); edit the policy"):
        registry.check_policy(champ, "promote", desk_policy)
