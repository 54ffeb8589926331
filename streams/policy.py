"""The routing policy: a versioned YAML file, validated with line-precise errors, and a pure `decide`.

A policy maps the acting model's intent, urgency, confidence and abstention to a route. Rules are
tried in order and the first match wins; `default` applies when none matches. Two safety rules
sit in code, ahead of the file, because no policy may turn them off: a ticket whose PII masking
failed, or that no model could classify, goes to `human_queue`. And an intent on the deny list is
never automated: a rule routing it to `auto_resolve` or `draft_for_review` is skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from triage.errors import TriageError
from triage.labels import CHANNELS, INTENTS, URGENCIES, Route
from triage.schemas import HeadPrediction

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


# Checked one by one, so an error points at the very list item or key.
Intent = Annotated[str, _label(INTENTS, "intent")]
Urgency = Annotated[str, _label(URGENCIES, "urgency")]
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
    """A parsed routing policy file: its rules, a hash of its text, and where it was read from."""

    spec: PolicySpec
    sha256: str
    source: str = "<memory>"

    @property
    def version(self) -> str:
        """The declared version plus a content hash, so an edit without a version bump is still told apart."""
        return f"{self.spec.version}@{self.sha256[:8]}"


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


def _matches(when: When, facts: Facts, spec: PolicySpec) -> bool:
    intent = facts.intent.label if facts.intent else None
    urgency = facts.urgency.label if facts.urgency else None
    confidence = facts.intent.confidence if facts.intent else 0.0
    checks = (
        when.intent is None or intent in when.intent,
        when.not_intent is None or intent not in when.not_intent,
        when.urgency is None or urgency in when.urgency,
        when.channel is None or facts.channel in when.channel,
        when.abstained is None or facts.abstained == when.abstained,
        when.denied is None or (intent in spec.deny_intents) == when.denied,
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
    spec = policy.spec
    intent = facts.intent.label if facts.intent else None
    denied = intent in spec.deny_intents
    for rule in spec.rules:
        if denied and rule.route in AUTOMATED:
            continue
        if _matches(rule.when, facts, spec):
            return RouteChoice(rule.route, rule.id, rule.reason)
    return RouteChoice(spec.default.route, spec.default.id, spec.default.reason)


def _line_map(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int], dupes: list[str]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                dupes.append(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice in the same mapping")
            seen.add(key)
            _line_map(value_node, (*path, key), out, dupes)
            # A scalar's own line; for a nested block, the line of its key.
            anchor = value_node if isinstance(value_node, yaml.ScalarNode) else key_node
            out[(*path, key)] = anchor.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out, dupes)


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int:
    path = tuple(loc)
    while path:
        # pydantic adds union-member tags (`float`, `literal[...]`) that are not in the document.
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), 1)


def parse_policy(text: str, source: str = "<memory>") -> RoutingPolicy:
    """Validate policy text; raise PolicyError with `source: line N: what is wrong` on any error."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError(f"{source}: line {line}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters)
        line = text[: exc.position].count("\n") + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise PolicyError(f"{source}: line {line}: character {char} is not allowed in YAML; remove it") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: line 1: cannot read the policy as YAML: {exc}") from None
    if node is None or not isinstance(data, dict):
        raise PolicyError(f"{source}: line 1: the policy must be a YAML mapping with version, thresholds, "
                          "rules and default")
    lines: dict[tuple[Any, ...], int] = {}
    dupes: list[str] = []
    _line_map(node, (), lines, dupes)
    if dupes:
        raise PolicyError(f"{source}: {dupes[0]}; remove one of them")
    rules = data.get("rules")
    if isinstance(rules, list):
        seen: set[Any] = set()
        for i, rule in enumerate(rules):
            rid = rule.get("id") if isinstance(rule, dict) else None
            if not isinstance(rid, str | int | float | bool):
                continue  # not an id at all: the schema check below names its line
            if rid in seen:
                raise PolicyError(f"{source}: line {lines.get(('rules', i, 'id'), 1)}: rules.{i}.id: rule id "
                                  f"{rid!r} is used twice; rule ids must be unique")
            seen.add(rid)
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            errors.append((_line_for(loc, lines), f"{where}: {msg}"))
        errors.sort(key=lambda e: e[0])
        line, first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise PolicyError(f"{source}: line {line}: {first}{more}") from None
    return RoutingPolicy(spec=spec, sha256=hashlib.sha256(text.encode()).hexdigest(), source=source)


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

    `check()` is cheap (a stat) and is called from a timer: a changed file is parsed and, if valid,
    replaces the current policy; if not, the old policy keeps running and `error` says why.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: RoutingPolicy = load_policy(path)
        self.error: str | None = None
        self._stamp = self._stat()
        self._refused_sha: str | None = None

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
            policy = parse_policy(text, str(self.path))
        except PolicyError as exc:
            self.error = f"{exc}; keeping policy {self.current.version}"
            return False
        self.current, self.error = policy, None
        return True
