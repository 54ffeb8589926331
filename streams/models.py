"""Which models classify: the champion, and a canary or shadow beside it; hot-swapped from the registry.

`ModelManager.refresh()` asks the registry what should run (champion version, active deployment)
and, when that changed, loads the new models off the event loop and swaps one immutable `ModelSet`
reference. A batch holds the set it started with, so in-flight tickets finish on the old models.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from triage.backoff import Backoff
from triage.labels import DeploymentMode
from triage.policy import PolicyWatcher
from triage.schemas import Deployment, HeadPrediction, ModelVersion
from triage.taxonomy import KnownLabels, Taxonomy

log = logging.getLogger(__name__)


class ModelsRefused(Exception):
    """The registry's models cannot take over (the routing policy does not hold for their labels)."""


class Predictor(Protocol):
    heads: dict[str, list[str]]

    def predict(self, texts: list[str]) -> Any: ...  # -> ml.serving.BatchResult


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    classifier: Predictor
    path: str = ""
    taxonomy: Taxonomy | None = None

    @property
    def label_set(self) -> Taxonomy:
        """The taxonomy the model was trained on (from its label maps when none was stored)."""
        return self.taxonomy or Taxonomy.from_heads(self.classifier.heads)

    @property
    def who(self) -> str:
        return f"model {self.name} v{self.version}"


@dataclass(frozen=True)
class ModelSet:
    """What classifies a batch: the champion, and optionally a challenger with its mode and share."""

    champion: LoadedModel | None
    challenger: LoadedModel | None = None
    mode: DeploymentMode | None = None
    percent: float = 0.0

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.champion.version if self.champion else None,
                self.challenger.version if self.challenger else None, self.mode, self.percent)

    def acting(self) -> list[tuple[str, Taxonomy]]:
        """The taxonomies of the models whose predictions route tickets (the policy must hold for each)."""
        out = [(f"champion {self.champion.who}", self.champion.label_set)] if self.champion else []
        if self.challenger is not None and self.mode == "canary":
            out.append((f"canary {self.challenger.who}", self.challenger.label_set))
        return out

    def known_labels(self) -> KnownLabels | None:
        """Labels that feedback may name: the champion's and the challenger's; None with no model."""
        models = [m for m in (self.champion, self.challenger) if m is not None]
        if not models:
            return None
        return KnownLabels.of([m.label_set for m in models], " and ".join(m.who for m in models))

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"champion": None, "challenger": None}
        if self.champion:
            out["champion"] = {"name": self.champion.name, "version": self.champion.version}
        if self.challenger:
            out["challenger"] = {"name": self.challenger.name, "version": self.challenger.version,
                                 "mode": self.mode, "percent": self.percent}
        return out


def in_canary(ticket_id: str, percent: float) -> bool:
    """Sticky canary assignment: the same ticket id always lands in the same arm for a given percent."""
    if percent <= 0.0:
        return False
    if percent >= 100.0:
        return True
    bucket = int.from_bytes(hashlib.sha256(ticket_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    return bucket * 100.0 < percent


def top3(heads: dict[str, HeadPrediction]) -> dict[str, HeadPrediction]:
    """Every head with its top-k cut to three (the audit keeps the top-3)."""
    return {h: p if len(p.top_k) <= 3 else p.model_copy(update={"top_k": p.top_k[:3]}) for h, p in heads.items()}


Loader = Callable[[Path], Predictor]


@dataclass(frozen=True)
class Wanted:
    """What the registry says should run."""

    champion: ModelVersion | None
    deployment: Deployment | None
    challenger: ModelVersion | None

    @property
    def key(self) -> tuple[Any, ...]:
        dep = self.deployment
        return (self.champion.version if self.champion else None,
                self.challenger.version if self.challenger else None,
                dep.mode if dep and self.challenger else None, dep.percent if dep and self.challenger else 0.0)


    def acting(self) -> list[tuple[str, Taxonomy]]:
        """Taxonomies of the models that would route tickets: the champion and a canary (not a shadow)."""
        from ml.registry import taxonomy_of

        out = [(f"champion model {m.name} v{m.version}", taxonomy_of(m)) for m in (self.champion,) if m]
        dep, chal = self.deployment, self.challenger
        if chal is not None and dep is not None and dep.mode == "canary" and self.champion is not None \
                and chal.version != self.champion.version:
            out.append((f"canary model {chal.name} v{chal.version}", taxonomy_of(chal)))
        return out

    def describe(self) -> str:
        return ", ".join(f"{m.name} v{m.version}" for m in (self.champion, self.challenger) if m) or "no model"


def read_registry(db_url: str, name: str) -> Wanted:
    """Blocking: the champion and the active deployment's challenger from the registry."""
    from ml import registry

    champ = registry.champion(db_url, name)
    dep = registry.active_deployment(db_url, name)
    chal = registry.get(db_url, name, dep.challenger_version) if dep is not None else None
    return Wanted(champion=champ, deployment=dep, challenger=chal)


def default_loader(threads: int) -> Loader:
    def load(path: Path) -> Predictor:
        from ml.serving import Classifier

        clf: Predictor = Classifier.load(path, threads=threads, int8=True)
        return clf

    return load


class ModelManager:
    """Polls the registry and keeps `current` (a ModelSet) up to date; never raises from `refresh`."""

    def __init__(self, db_url: str, name: str, loader: Loader, policy: PolicyWatcher | None = None) -> None:
        self.db_url = db_url
        self.name = name
        self.loader = loader
        # The policy must hold for the labels of new models before they take over; it is re-bound after.
        self.policy = policy
        self.current = ModelSet(champion=None)
        self.error: str | None = None
        # True once the registry has been read: until then "no champion" means "not known yet".
        self.known = False
        self._cache: dict[int, LoadedModel] = {}
        self._lock = asyncio.Lock()

    def _load(self, mv: ModelVersion) -> LoadedModel:
        cached = self._cache.get(mv.version)
        if cached is not None:
            return cached
        from ml import registry

        path = registry.verified_path(mv)
        loaded = LoadedModel(name=mv.name, version=mv.version, classifier=self.loader(path), path=str(path),
                             taxonomy=registry.taxonomy_of(mv))
        self._cache[mv.version] = loaded
        return loaded

    def _build(self, wanted: Wanted) -> ModelSet:
        if wanted.champion is None:
            return ModelSet(champion=None)
        champion = self._load(wanted.champion)
        challenger = None
        if wanted.challenger is not None and wanted.challenger.version != wanted.champion.version:
            challenger = self._load(wanted.challenger)
        keep = {champion.version} | ({challenger.version} if challenger else set())
        self._cache = {v: m for v, m in self._cache.items() if v in keep}
        dep = wanted.deployment
        return ModelSet(champion=champion, challenger=challenger,
                        mode=dep.mode if dep and challenger else None,
                        percent=dep.percent if dep and challenger else 0.0)

    async def ensure_known(self) -> None:
        """Wait (retrying with backoff) until the registry has been read once, so that no ticket is
        sent to people as "no model" only because Postgres was down when the worker started."""
        backoff = Backoff()
        while not self.known:
            await self.refresh()
            if not self.known:
                await asyncio.sleep(backoff.next())

    async def refresh(self) -> bool:
        """Swap in what the registry wants if it differs from `current`; True when swapped."""
        async with self._lock:
            try:
                wanted = await asyncio.to_thread(read_registry, self.db_url, self.name)
                if wanted.key == self.current.key:
                    self.error, self.known = None, True
                    return False
                refused = self.policy.fits(wanted.acting()) if self.policy is not None else None
                if refused is not None:
                    raise ModelsRefused(f"refusing {wanted.describe()}: {refused}")
                new = await asyncio.to_thread(self._build, wanted)
            except ModelsRefused as exc:  # the registry was read: what it wants may not run; keep what runs
                first = self.error != str(exc)
                self.error, self.known = str(exc), True
                log.log(logging.ERROR if first else logging.DEBUG, "%s; keeping %s", exc, self.current.describe())
                return False
            except Exception as exc:  # noqa: BLE001 - keep serving the models we have; report why
                first = self.error is None  # warn once per failure spell, not every poll
                self.error = f"model refresh failed: {type(exc).__name__}: {str(exc)[:300]}"
                log.log(logging.WARNING if first else logging.DEBUG, "%s; keeping %s", self.error,
                        self.current.describe())
                return False
            old, self.current, self.error, self.known = self.current, new, None, True
            if self.policy is not None:
                self.policy.rebind(new.acting())
            log.info("models changed: %s -> %s", old.describe(), new.describe())
            return True
