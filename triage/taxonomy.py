"""A support team's taxonomy as data: its intents, urgencies, SLAs, what is never automated, prompts.

One YAML file per workspace (`taxonomy.yaml`), validated with line-precise errors, copied into every
model folder at training time and stored with the model version in the registry: a model knows the
label set it was trained on, and everything that checks labels (policy, feedback, the quality suite,
dbt) reads the deployed models' taxonomies, never a Python tuple. The simulator's retail bank is one
example workspace (`workspaces/bank/`), not the product's vocabulary.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.errors import TriageError
from triage.settings import PROJECT_ROOT
from triage.yamlfile import read_yaml, validate

# A team's own label as its export spells it ('reverted_card_payment?', 'Card arrival'): 1 to 80 characters,
# no slash or backslash (labels name prompt files), no control characters, no space at either end.
LABEL_PATTERN = r"^[^\s/\\\x00-\x1f\x7f]([^/\\\x00-\x1f\x7f]{0,78}[^\s/\\\x00-\x1f\x7f])?$"
LABEL_RULE = "1 to 80 characters, no '/' or '\\', no control characters, no space at either end"
DEFAULT_URGENCIES = ("low", "normal", "high", "critical")
DEFAULT_OOD_LABEL = "out_of_scope"
BANK_WORKSPACE = PROJECT_ROOT / "workspaces" / "bank"
TAXONOMY_FILE = "taxonomy.yaml"
EXAMPLES_FILE = "examples.csv"  # example texts per intent (`triage init` writes it; the simulator reads it)
MODEL_FILE = "taxonomy.json"  # its copy in a model folder (ml.layout.TAXONOMY names the same file)


class TaxonomyError(TriageError, ValueError):
    """A taxonomy file that cannot be used; the message names the file, the line and the fix."""


def _named(what: str) -> AfterValidator:
    def check(v: str) -> str:
        if not re.match(LABEL_PATTERN, v):
            raise ValueError(f"{what} name {v!r}: use {LABEL_RULE}")
        return v

    return AfterValidator(check)


# Checked one by one, so an error points at the very key or list item.
IntentName = Annotated[str, _named("intent")]
UrgencyName = Annotated[str, _named("urgency")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IntentSpec(_Strict):
    """One intent: what it means, whether it may be automated, its SLA and its drafting prompt."""

    description: str = ""
    automate: bool = True
    sla_minutes: int | None = Field(default=None, ge=1)
    prompt: str | None = Field(default=None, pattern=LABEL_PATTERN)


class Taxonomy(_Strict):
    """The label set of a workspace, in class-index order (the order of the file)."""

    name: str = Field(min_length=1, max_length=80)
    version: str = Field(default="1", min_length=1, max_length=40)
    out_of_scope: str = Field(default=DEFAULT_OOD_LABEL, pattern=LABEL_PATTERN)
    urgencies: list[UrgencyName] = Field(default_factory=lambda: list(DEFAULT_URGENCIES))
    sla_minutes: dict[str, int] = Field(default_factory=dict)
    intents: dict[IntentName, IntentSpec] = Field(min_length=2)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("intents", mode="before")
    @classmethod
    def _bare_intents(cls, v: Any) -> Any:
        """`intents:` may be a plain list of names, or a mapping whose values are left empty."""
        if isinstance(v, list):  # names, or {"name": ..., ...} items (the stored JSON form, which keeps order)
            return {str(x["name"]) if isinstance(x, dict) else str(x):
                    ({k: y for k, y in x.items() if k != "name"} if isinstance(x, dict) else {}) for x in v}
        if isinstance(v, dict):
            return {k: ({} if spec is None else spec) for k, spec in v.items()}
        return v

    @field_validator("urgencies")
    @classmethod
    def _urgency_names(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an urgency is listed twice; list each once, least urgent first")
        if len(v) == 1:
            raise ValueError("one urgency is not a head; list two or more, or none (`urgencies: []`)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        if self.out_of_scope in self.intents:
            raise ValueError(f"intents: {self.out_of_scope!r} is the out-of-scope label, not an intent; "
                             "remove it from intents or rename out_of_scope")
        unknown = [u for u in self.sla_minutes if u not in self.urgencies]
        if unknown:
            raise ValueError(f"sla_minutes: {unknown[0]!r} is not one of the urgencies ({', '.join(self.urgencies)})")
        if any(m < 1 for m in self.sla_minutes.values()):
            raise ValueError("sla_minutes: every SLA must be at least 1 minute")
        return self

    @property
    def intent_names(self) -> tuple[str, ...]:
        return tuple(self.intents)

    @property
    def heads(self) -> dict[str, list[str]]:
        """Head name -> labels in class-index order; no urgency head when the taxonomy has no urgencies."""
        out = {"intent": list(self.intents)}
        if self.urgencies:
            out["urgency"] = list(self.urgencies)
        return out

    @property
    def never_automated(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.intents.items() if not spec.automate)

    def sla(self, intent: str | None, urgency: str | None) -> int | None:
        """Minutes within which a person should answer: the intent's own SLA, else the urgency's."""
        own = self.intents.get(intent or "")
        if own is not None and own.sla_minutes is not None:
            return own.sla_minutes
        return self.sla_minutes.get(urgency or "")

    def prompt_name(self, intent: str | None) -> str | None:
        """The prompt file an intent drafts with (its own `prompt`, else its name; the loader falls back)."""
        own = self.intents.get(intent or "")
        return (own.prompt or intent) if own is not None else intent

    def to_json(self) -> dict[str, Any]:
        """JSON with intents as a list: a jsonb object would not keep their (class-index) order."""
        data = self.model_dump(mode="json")
        data["intents"] = [{"name": k, **v} for k, v in data["intents"].items()]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Taxonomy:
        return cls.model_validate(data)

    @classmethod
    def from_heads(cls, heads: Mapping[str, Sequence[str]], *, name: str = "derived",
                   out_of_scope: str = DEFAULT_OOD_LABEL) -> Taxonomy:
        """The taxonomy of a model that was registered without one: its label maps, nothing more."""
        return cls(name=name, intents={i: IntentSpec() for i in heads.get("intent", ())},
                   urgencies=list(heads.get("urgency", ())), out_of_scope=out_of_scope)

    def to_yaml(self) -> str:
        """The file form, with defaults left out so that a user edits only what matters."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data = {"name": self.name, "version": self.version, **data}
        data["intents"] = {k: (v or None) for k, v in data.get("intents", {}).items()}
        text = str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))
        return text.replace(": null\n", ":\n")


def parse_taxonomy(text: str, source: str = "<memory>") -> Taxonomy:
    """Validate taxonomy text; raise TaxonomyError with `source: line N: what is wrong` on any error."""
    doc = read_yaml(text, source, TaxonomyError, "taxonomy")
    return validate(Taxonomy, doc, source, TaxonomyError)


def load_taxonomy(path: Path) -> Taxonomy:
    """Read and validate a taxonomy file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TaxonomyError(f"{path}: cannot read the taxonomy file ({exc.strerror or exc}); fix the path in "
                            "TRIAGE_WORKSPACE (its taxonomy.yaml) or write one with `triage init`") from None
    return parse_taxonomy(text, str(path))


def workspace_taxonomy(path: Path) -> Taxonomy:
    """`load_taxonomy(path)`, read again only when the file changes (cheap enough to call per ticket)."""
    try:
        st = Path(path).stat()
    except OSError:
        return load_taxonomy(path)  # raises the error that names the fix
    return _load_stamped(Path(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load_stamped(path: Path, mtime_ns: int, size: int) -> Taxonomy:
    return load_taxonomy(path)


@lru_cache(maxsize=1)
def bank() -> Taxonomy:
    """The example workspace's taxonomy: the simulator's retail bank."""
    return load_taxonomy(BANK_WORKSPACE / TAXONOMY_FILE)


def from_model_dir(model_dir: Path, heads: dict[str, list[str]]) -> Taxonomy:
    """A model folder's stored taxonomy (`taxonomy.json`), or one derived from its label maps."""
    path = Path(model_dir) / MODEL_FILE
    if path.is_file():
        return Taxonomy.from_json(json.loads(path.read_text(encoding="utf-8")))
    return Taxonomy.from_heads(heads)


@dataclass(frozen=True)
class KnownLabels:
    """The labels that feedback may name: those of every deployed model (champion and challenger)."""

    intents: frozenset[str]
    urgencies: frozenset[str]
    source: str

    @classmethod
    def of(cls, taxonomies: Sequence[Taxonomy], source: str) -> KnownLabels:
        return cls(intents=frozenset(i for t in taxonomies for i in (*t.intents, t.out_of_scope)),
                   urgencies=frozenset(u for t in taxonomies for u in t.urgencies), source=source)


def describe_labels(labels: Iterable[str], limit: int = 12) -> str:
    """`a, b, c` or `a, b, … (77 in all)`: a known set short enough for one error line."""
    labels = list(labels)
    if len(labels) <= limit:
        return ", ".join(labels)
    return ", ".join(labels[:limit]) + f", … ({len(labels)} in all)"


def suggest(value: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known label is close, else empty."""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""
