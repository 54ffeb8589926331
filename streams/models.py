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
from triage.schemas import Deployment, HeadPrediction, ModelVersion

log = logging.getLogger(__name__)


class Predictor(Protocol):
    heads: dict[str, list[str]]

    def predict(self, texts: list[str]) -> Any: ...  # -> ml.serving.BatchResult


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    classifier: Predictor
    path: str = ""


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

    def __init__(self, db_url: str, name: str, loader: Loader) -> None:
        self.db_url = db_url
        self.name = name
        self.loader = loader
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
        loaded = LoadedModel(name=mv.name, version=mv.version, classifier=self.loader(path), path=str(path))
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
                new = await asyncio.to_thread(self._build, wanted)
            except Exception as exc:  # noqa: BLE001 - keep serving the models we have; report why
                first = self.error is None  # warn once per failure spell, not every poll
                self.error = f"model refresh failed: {type(exc).__name__}: {str(exc)[:300]}"
                log.log(logging.WARNING if first else logging.DEBUG, "%s; keeping %s", self.error,
                        self.current.describe())
                return False
            old, self.current, self.error, self.known = self.current, new, None, True
            log.info("models changed: %s -> %s", old.describe(), new.describe())
            return True
