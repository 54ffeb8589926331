"""The routing policy: a versioned YAML file, validated with line-precise errors, and a pure `decide`.

A policy maps the acting model's intent, urgency, confidence and abstention to a route. Rules are
tried in order and the first match wins; `default` applies when none matches. Two safety rules
sit in code, ahead of the file, because no policy may turn them off: a ticket whose PII masking
failed, or that no model could classify, goes to `human_queue`. And an intent on the deny list is
never automated: a rule routing it to `auto_resolve` or `draft_for_review` is skipped; the
taxonomy's `automate: false` intents are on that list too.

The schema checks the shape; the labels a policy names are checked against the taxonomies of the
models that act on its decisions (`bind`), so a team's own intents need no code, and a policy naming
an intent that the champion does not know is refused with its line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.errors import TriageError
from triage.labels import CHANNELS, Route
from triage.schemas import HeadPrediction
from triage.settings import get_settings
from triage.taxonomy import LABEL_PATTERN, Taxonomy, describe_labels, load_taxonomy, suggest
from triage.yamlfile import Lines, line_for, read_yaml, validate

AUTOMATED: frozenset[str] = frozenset({"auto_resolve", "draft_for_review"})
RULE_PII_FAILED = "builtin:pii-mask-failed"
RULE_NO_MODEL = "builtin:no-model"
ThresholdName = Literal["auto_resolve", "draft_for_review"]


class PolicyError(TriageError, ValueError):
    """A policy file that cannot be used; the message names the file, the line and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Thresholds(_Strict):
    auto_resolve: float | None = Field(None, ge=0.0, le=1.0)
    draft_for_review: float | None = Field(None, ge=0.0, le=1.0)


class ThresholdTable(_Strict):
    default: Thresholds
    intents: dict[Intent, Thresholds] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _complete(cls, v: Thresholds) -> Thresholds:
        if v.auto_resolve is None or v.draft_for_review is None:
            raise ValueError("default needs both auto_resolve and draft_for_review")
        return v

    def get(self, intent: str | None, name: ThresholdName) -> float:
        own = self.intents.get(intent or "")
        value = getattr(own, name) if own is not None else None
        return float(value if value is not None else getattr(self.default, name))


def _label(known: tuple[str, ...], what: str) -> AfterValidator:
    def check(v: str) -> str:
        if v not in known:
            raise ValueError(f"unknown {what} {v!r}; known: {', '.join(known)}")
        return v

    return AfterValidator(check)


# Intents and urgencies are a team's own labels: the schema checks their form, `bind` their meaning.
Intent = Annotated[str, Field(pattern=LABEL_PATTERN)]
Urgency = Annotated[str, Field(pattern=LABEL_PATTERN)]
ChannelName = Annotated[str, _label(CHANNELS, "channel")]


class When(_Strict):
    """Conditions of a rule; all given ones must hold. An empty `when` always matches."""

    intent: list[Intent] | None = None
    not_intent: list[Intent] | None = None
    urgency: list[Urgency] | None = None
    channel: list[ChannelName] | None = None
    abstained: bool | None = None
    denied: bool | None = None
    # A number, or the name of a per-intent threshold from `thresholds`.
    confidence_at_least: float | ThresholdName | None = None
    confidence_below: float | ThresholdName | None = None

    @field_validator("confidence_at_least", "confidence_below")
    @classmethod
    def _unit(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, float) and not 0.0 <= v <= 1.0:
            raise ValueError("a confidence must be between 0 and 1")
        return v


class Rule(_Strict):
    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._:\-]+$")
    when: When = Field(default_factory=When)
    route: Route
    reason: str = ""


class DefaultRule(_Strict):
    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._:\-]+$")
    route: Route
    reason: str = ""


class PolicySpec(_Strict):
    version: str = Field(min_length=1, max_length=40)
    deny_intents: list[Intent] = Field(default_factory=list)
    thresholds: ThresholdTable
    rules: list[Rule] = Field(min_length=1)
    default: DefaultRule

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicySpec:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice; rule ids must be unique")
            seen.add(rule.id)
        return self


@dataclass(frozen=True)
class RoutingPolicy:
    """A parsed routing policy file: its rules, a hash of its text, and where it was read from.

    `never_automated` holds the acting models' `automate: false` intents once the policy is bound
    to their taxonomies (`bind`); `bound_to` names those taxonomies.
    """

    spec: PolicySpec
    sha256: str
    source: str = "<memory>"
    lines: Lines = field(default_factory=dict, compare=False, repr=False)
    never_automated: frozenset[str] = frozenset()
    bound_to: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """The declared version plus a content hash, so an edit without a version bump is still told apart."""
        return f"{self.spec.version}@{self.sha256[:8]}"

    @property
    def denied(self) -> frozenset[str]:
        """Intents never automated: the policy's deny list and the taxonomy's `automate: false` intents."""
        return frozenset(self.spec.deny_intents) | self.never_automated


def _label_uses(spec: PolicySpec) -> list[tuple[tuple[Any, ...], str, str]]:
    """Every label the policy names: (path in the file, head, label)."""
    uses: list[tuple[tuple[Any, ...], str, str]] = [
        (("deny_intents", i), "intent", v) for i, v in enumerate(spec.deny_intents)]
    uses += [(("thresholds", "intents", k), "intent", k) for k in spec.thresholds.intents]
    for r, rule in enumerate(spec.rules):
        for key, head in (("intent", "intent"), ("not_intent", "intent"), ("urgency", "urgency")):
            for j, v in enumerate(getattr(rule.when, key) or ()):
                uses.append((("rules", r, "when", key, j), head, v))
    return uses


def label_problems(policy: RoutingPolicy, taxonomy: Taxonomy, who: str) -> list[str]:
    """`source: line N: ...` for every label of the policy that `taxonomy` does not know (empty: valid)."""
    problems: list[tuple[int, str]] = []
    for path, head, label in _label_uses(policy.spec):
        known = taxonomy.heads.get(head)
        if known is not None and label in known:
            continue
        where = ".".join(str(p) for p in path)
        if known is None:
            what = f"{who} has no {head} head (its taxonomy {taxonomy.name!r} lists no {head} labels)"
        else:
            what = (f"unknown {head} {label!r}{suggest(label, known)}; {who} knows: {describe_labels(known)}")
        problems.append((line_for(path, policy.lines), f"{policy.source}: line {line_for(path, policy.lines)}: "
                         f"{where}: {what}"))
    problems.sort(key=lambda p: p[0])
    return [p[1] for p in problems]


def bind(policy: RoutingPolicy, taxonomies: Sequence[tuple[str, Taxonomy]]) -> RoutingPolicy:
    """The policy checked against every acting model's taxonomy (`(who, taxonomy)` pairs).

    Raises PolicyError naming the first line that breaks and the fix; returns the policy with the
    taxonomies' never-automated intents added to its deny list.
    """
    for who, taxonomy in taxonomies:
        problems = label_problems(policy, taxonomy, who)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise PolicyError(f"{problems[0]}{more}; edit the policy to use its labels, or deploy a model "
                              "whose taxonomy has them")
    never = frozenset().union(*(t.never_automated for _, t in taxonomies)) if taxonomies else frozenset()
    return replace(policy, never_automated=never, bound_to=tuple(f"{w} ({t.name})" for w, t in taxonomies))


@dataclass(frozen=True)
class RouteChoice:
    """The route chosen for one ticket and the rule that chose it (with the rule's reason)."""

    route: Route
    rule_id: str
    reason: str


@dataclass(frozen=True)
class Facts:
    """What the policy looks at for one ticket."""

    channel: str
    intent: HeadPrediction | None
    urgency: HeadPrediction | None
    pii_failed: bool = False
    no_model: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return any(h is not None and h.abstained for h in (self.intent, self.urgency))


def _threshold(value: float | str, spec: PolicySpec, intent: str | None) -> float:
    if isinstance(value, str):
        return spec.thresholds.get(intent, value)  # type: ignore[arg-type]
    return float(value)


def _matches(when: When, facts: Facts, spec: PolicySpec, denied: frozenset[str]) -> bool:
    intent = facts.intent.label if facts.intent else None
    urgency = facts.urgency.label if facts.urgency else None
    confidence = facts.intent.confidence if facts.intent else 0.0
    checks = (
        when.intent is None or intent in when.intent,
        when.not_intent is None or intent not in when.not_intent,
        when.urgency is None or urgency in when.urgency,
        when.channel is None or facts.channel in when.channel,
        when.abstained is None or facts.abstained == when.abstained,
        when.denied is None or (intent in denied) == when.denied,
        when.confidence_at_least is None or confidence >= _threshold(when.confidence_at_least, spec, intent),
        when.confidence_below is None or confidence < _threshold(when.confidence_below, spec, intent),
    )
    return all(checks)


def decide(policy: RoutingPolicy, facts: Facts) -> RouteChoice:
    """The route for one ticket and the rule that chose it (first match wins)."""
    if facts.pii_failed:
        return RouteChoice("human_queue", RULE_PII_FAILED, "PII masking failed: fail closed to a person")
    if facts.no_model:
        return RouteChoice("human_queue", RULE_NO_MODEL, "no champion model is loaded")
    spec, never = policy.spec, policy.denied
    intent = facts.intent.label if facts.intent else None
    denied = intent in never
    for rule in spec.rules:
        if denied and rule.route in AUTOMATED:
            continue
        if _matches(rule.when, facts, spec, never):
            return RouteChoice(rule.route, rule.id, rule.reason)
    return RouteChoice(spec.default.route, spec.default.id, spec.default.reason)


def parse_policy(text: str, source: str = "<memory>") -> RoutingPolicy:
    """Validate policy text; raise PolicyError with `source: line N: what is wrong` on any error."""
    doc = read_yaml(text, source, PolicyError, "policy", " with version, thresholds, rules and default")
    rules = doc.data.get("rules")
    if isinstance(rules, list):
        seen: set[Any] = set()
        for i, rule in enumerate(rules):
            rid = rule.get("id") if isinstance(rule, dict) else None
            if not isinstance(rid, str | int | float | bool):
                continue  # not an id at all: the schema check below names its line
            if rid in seen:
                raise PolicyError(f"{source}: line {doc.line('rules', i, 'id')}: rules.{i}.id: rule id "
                                  f"{rid!r} is used twice; rule ids must be unique")
            seen.add(rid)
    spec = validate(PolicySpec, doc, source, PolicyError)
    return RoutingPolicy(spec=spec, sha256=hashlib.sha256(text.encode()).hexdigest(), source=source,
                         lines=doc.lines)


def load_policy(path: Path) -> RoutingPolicy:
    """Read and validate a policy file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror or exc}); "
                          "fix the path in TRIAGE_POLICY_PATH") from None
    return parse_policy(text, str(path))


class PolicyWatcher:
    """Holds the policy in force and reloads it when the file changes; a bad file is refused.

    `check()` is cheap (a stat) and is called from a timer: a changed file is parsed, checked against
    the acting models' taxonomies and, if valid, replaces the current policy; if not, the old policy
    keeps running and `error` says why. `rebind()` re-checks the policy when the models change.
    """

    def __init__(self, path: Path, taxonomies: Sequence[tuple[str, Taxonomy]] | None = None) -> None:
        """`taxonomies`: what the policy must fit until the models are known; default the workspace's."""
        self.path = path
        if taxonomies is None:
            file = get_settings().taxonomy_file
            taxonomies = [(f"the workspace taxonomy {file}", load_taxonomy(file))]
        self.taxonomies = tuple(taxonomies)
        self.current: RoutingPolicy = bind(load_policy(path), self.taxonomies)
        self.error: str | None = None
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def check(self) -> bool | None:
        """True: reloaded; False: a changed file was refused (see `error`); None: nothing changed."""
        stamp = self._stat()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            self.error = f"{self.path}: cannot read the policy file ({exc.strerror or exc}); keeping " \
                         f"policy {self.current.version}"
            return False
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            self.error = f"{self.path}: line {line}: the policy file is not UTF-8 text; save it as UTF-8; " \
                         f"keeping policy {self.current.version}"
            return False
        sha = hashlib.sha256(text.encode()).hexdigest()
        if sha == self.current.sha256:
            self.error = None
            return None
        try:
            policy = bind(parse_policy(text, str(self.path)), self.taxonomies)
        except PolicyError as exc:
            self.error = f"{exc}; keeping policy {self.current.version}"
            return False
        self.current, self.error = policy, None
        return True

    def fits(self, taxonomies: Sequence[tuple[str, Taxonomy]]) -> str | None:
        """None when the policy in force holds for these models' labels, else the first line that breaks."""
        if not taxonomies:
            return None
        try:
            bind(self.current, taxonomies)
        except PolicyError as exc:
            return str(exc)
        return None

    def rebind(self, taxonomies: Sequence[tuple[str, Taxonomy]]) -> str | None:
        """Check the policy in force against new acting models; None and switched, or why not (nothing changes).

        No acting model (no champion): the policy stays bound as it was; such tickets go to people anyway.
        """
        if not taxonomies:
            return None
        try:
            policy = bind(self.current, taxonomies)
        except PolicyError as exc:
            return str(exc)
        self.current, self.taxonomies = policy, tuple(taxonomies)
        return None
