"""Traffic for any taxonomy: paraphrases of a workspace's example texts per intent.

The bank's generator (`apps.simulator.TicketGenerator`) writes its tickets from hand-made phrase
tables. A team's own workspace has example texts instead (`examples.csv`, which `triage init` writes
with PII masked, or `examples:` lists typed into a file of the same columns); this generator
paraphrases them by templates and noise (an opener and a closer, filler words, contractions, typos, chat
lower-casing) and puts fresh values where the examples had PII placeholders, so the stack can be
exercised on the team's taxonomy before real traffic arrives. `generator_for` picks the one to use.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from apps import sim_text as T
from apps.simulator import SimTicket, TicketGenerator
from triage.errors import TriageError
from triage.taxonomy import EXAMPLES_FILE, TAXONOMY_FILE, Taxonomy, bank, load_taxonomy

OPENERS = ("", "", "Hi,", "Hello,", "Hey,", "Quick question:", "Hi there, hoping you can help.", "Good morning.")
CLOSERS = ("", "", "Thanks.", "Thanks in advance!", "Can you help?", "Please advise.", "Any update would be great.",
           "Appreciate it.")
FILLERS = ("please", "just", "really", "actually")
# Contractions both ways: a paraphrase swaps one form for the other.
SWAPS = (("I am", "I'm"), ("do not", "don't"), ("can not", "can't"), ("it is", "it's"), ("I have", "I've"),
         ("does not", "doesn't"), ("is not", "isn't"), ("what is", "what's"))
# Placeholders the worker's masking writes (`<EMAIL_1>`): refilled with fresh values of the kind.
_PLACEHOLDER = re.compile(r"<([A-Z]+)_\d+>")
_REFILLED = ("EMAIL", "PHONE", "CARD", "IBAN", "PERSON")


class ExamplesError(TriageError, ValueError):
    """A workspace whose traffic cannot be generated; the message names the file and the fix."""


def read_examples(path: Path, taxonomy: Taxonomy) -> dict[str, list[tuple[str, str | None]]]:
    """Intent -> [(text, urgency or None)] from a CSV with columns text, intent and optionally urgency.

    Rows naming a label the taxonomy lacks are refused (one message naming the row), so the simulator
    never sends truth that the models cannot know.
    """
    known = set(taxonomy.intents) | {taxonomy.out_of_scope}
    out: dict[str, list[tuple[str, str | None]]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"text", "intent"} - set(reader.fieldnames or ())
            if missing:
                raise ExamplesError(f"{path}: no column {', '.join(sorted(missing))}; the columns are text, intent "
                                    "and optionally urgency (as `triage init` writes them)")
            for line, row in enumerate(reader, start=2):
                text, intent = (row.get("text") or "").strip(), (row.get("intent") or "").strip()
                urgency = (row.get("urgency") or "").strip() or None
                if not text:
                    continue
                if intent not in known:
                    raise ExamplesError(f"{path}: line {line}: intent {intent!r} is not in the taxonomy "
                                        f"{taxonomy.name!r}; fix the row or add the intent to {TAXONOMY_FILE}")
                if urgency is not None and urgency not in taxonomy.urgencies:
                    urgency = None  # a label of a head the taxonomy does not have: the truth has no urgency
                out.setdefault(intent, []).append((text, urgency))
    except OSError as exc:
        raise ExamplesError(f"{path}: cannot read the examples ({exc.strerror or exc}); run `triage init` "
                            "again, or write text,intent rows") from None
    return out


@dataclass
class ExampleGenerator(TicketGenerator):
    """Labelled tickets for `taxonomy`, paraphrased from `examples` (intent -> [(text, urgency)])."""

    taxonomy: Taxonomy = field(default_factory=bank)
    examples: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.intents = [i for i in self.taxonomy.intents if self.examples.get(i)]
        if not self.intents:
            raise ExamplesError(f"taxonomy {self.taxonomy.name!r}: no example texts for any intent; add rows "
                                f"(text,intent) to {EXAMPLES_FILE} in the workspace")
        # Out-of-scope traffic: the workspace's own examples of it, else the bank's off-topic questions.
        self.off_topic = self.examples.get(self.taxonomy.out_of_scope) or [
            (t, None) for t in T.REQUESTS[bank().out_of_scope]]
        # Drift: after `drift_after` tickets, the first quarter of the intents grows four-fold.
        self.drifting_intents = set(self.intents[: max(1, len(self.intents) // 4)])

    def _pick(self, drifting: bool) -> str:
        if self.ood_rate and self.rng.random() < self.ood_rate:
            return self.taxonomy.out_of_scope
        weights = [4.0 if drifting and i in self.drifting_intents else 1.0 for i in self.intents]
        return self.rng.choices(self.intents, weights=weights)[0]

    def _urgency(self, intent: str, labelled: str | None = None) -> str | None:  # type: ignore[override]
        urgencies = self.taxonomy.urgencies
        if not urgencies:
            return None
        if labelled is not None:
            return labelled
        weights = [3.0 if 0 < i < len(urgencies) - 1 else 1.0 for i in range(len(urgencies))]
        return self.rng.choices(urgencies, weights=weights)[0]

    def paraphrase(self, text: str) -> str:
        """The example re-worded: contractions swapped, a filler word in or out, opener and closer."""
        r = self.rng
        for long, short in SWAPS:
            if r.random() < 0.5:
                text = re.sub(rf"\b{long}\b", short, text, flags=re.I) if r.random() < 0.5 else \
                    re.sub(rf"\b{re.escape(short)}\b", long, text, flags=re.I)
        words = text.split()
        fillers = [i for i, w in enumerate(words) if w.lower() in FILLERS]
        if fillers and r.random() < 0.5:
            del words[r.choice(fillers)]
        elif len(words) > 3 and r.random() < 0.3:
            words.insert(r.randint(1, len(words) - 1), r.choice(FILLERS))
        parts = [r.choice(OPENERS), " ".join(words), r.choice(CLOSERS)]
        return " ".join(p for p in parts if p)

    def generate(self) -> SimTicket:
        r = self.rng
        self.count += 1
        drifting = self.drift_after is not None and self.count > self.drift_after
        intent = self._pick(drifting)
        pool = self.off_topic if intent == self.taxonomy.out_of_scope else self.examples[intent]
        text, labelled = r.choice(pool)
        urgency = self._urgency(intent, labelled)
        name = r.choice(T.NAMES)
        channel = r.choices(["email", "chat", "internal"], weights=[0.55, 0.4, 0.05])[0]
        body = self._typos(self.paraphrase(text))
        if channel != "email" and r.random() < 0.3:
            body = body.lower()  # chat style; applied before PII so planted values stay exact
        pii: dict[str, list[str]] = {}

        def refill(m: re.Match[str]) -> str:
            kind = m.group(1)
            if kind not in _REFILLED:
                return m.group(0)
            value = self.pii_value(kind, name)
            pii.setdefault(kind, []).append(value)
            return value

        body = _PLACEHOLDER.sub(refill, body) if "<" in body else body
        topic = intent.replace("_", " ").capitalize()
        message = self._message(body, topic, channel, name, drifting)
        return SimTicket(message=message, intent=intent, urgency=urgency, pii=pii)


def is_bank(taxonomy: Taxonomy) -> bool:
    """The simulator's own bank: its phrase tables know exactly these intents and urgencies."""
    ref = bank()
    return taxonomy.intent_names == ref.intent_names and taxonomy.urgencies == ref.urgencies


def generator_for(workspace: Path, *, seed: int = 0, ood_rate: float = 0.0, drift_after: int | None = None,
                  examples: Path | None = None) -> TicketGenerator:
    """The bank's generator for the bank's taxonomy, else paraphrases of the workspace's examples."""
    taxonomy = load_taxonomy(workspace / TAXONOMY_FILE)
    if examples is None and is_bank(taxonomy):
        return TicketGenerator(seed=seed, ood_rate=ood_rate, drift_after=drift_after)
    path = examples or workspace / EXAMPLES_FILE
    return ExampleGenerator(seed=seed, ood_rate=ood_rate, drift_after=drift_after, taxonomy=taxonomy,
                            examples=read_examples(path, taxonomy))
