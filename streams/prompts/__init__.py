"""Versioned drafting prompts, one YAML file per intent, plus the shared frame in `_base.yaml`.

The files live in the workspace's `prompts/` folder (TRIAGE_WORKSPACE); an intent without its own
file, or one the taxonomy points elsewhere with `prompt:`, drafts with `default.yaml`.

Each intent file has an `id`, a `version`, the facts a draft may state, and the deterministic
`template_reply` that serves when no model may or can answer. The recorded prompt version is
`<intent version>+base.<base version>`, so a change to either file shows on every llm_calls row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from triage.errors import TriageError
from triage.settings import get_settings
from triage.taxonomy import TaxonomyError, workspace_taxonomy

DEFAULT = "default"


class PromptError(TriageError, ValueError):
    """A prompt file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Prompt:
    id: str
    version: str
    intent: str
    system: str
    user: str
    facts: tuple[str, ...]
    template_reply: str

    def messages(self, *, ticket: str, intent: str, urgency: str) -> list[dict[str, str]]:
        """Chat messages for one masked ticket (structured: intent, urgency, allowed facts, text)."""
        facts = "\n".join(f"- {f}" for f in self.facts) or "- (none)"
        user = self.user.format(intent=intent, urgency=urgency, facts=facts, ticket=ticket.strip())
        return [{"role": "system", "content": self.system.strip()}, {"role": "user", "content": user}]


def _read(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"prompt file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise PromptError(f"prompt file {path} must be a mapping with keys {', '.join(required)}")
    missing = [k for k in required if not data.get(k)]
    if missing:
        raise PromptError(f"prompt file {path} lacks {', '.join(missing)}; add them")
    return data


def _prompt_name(intent: str | None, workspace: Path) -> str | None:
    """The prompt file name the workspace's taxonomy gives `intent` (`prompt:`), else the intent itself."""
    try:
        return workspace_taxonomy(workspace / "taxonomy.yaml").prompt_name(intent)
    except TaxonomyError:  # no taxonomy file next to the prompts: prompts are looked up by intent
        return intent


def load_prompt(intent: str | None, directory: Path | None = None) -> Prompt:
    """The prompt of `intent`, or the default prompt when the intent has no file of its own."""
    if directory is None:
        settings = get_settings()
        return _load(_prompt_name(intent, settings.workspace), settings.prompts_dir)
    return _load(intent, directory)


@lru_cache(maxsize=256)
def _load(intent: str | None, directory: Path) -> Prompt:
    base = _read(directory / "_base.yaml", ("id", "version", "system", "user"))
    path = directory / f"{intent}.yaml"
    if not intent or not path.is_file() or intent.startswith("_"):
        path = directory / f"{DEFAULT}.yaml"
    data = _read(path, ("id", "version", "template_reply"))
    facts = data.get("facts") or []
    if not isinstance(facts, list) or not all(isinstance(f, str) for f in facts):
        raise PromptError(f"prompt file {path}: facts must be a list of sentences")
    return Prompt(
        id=str(data["id"]),
        version=f"{data['version']}+base.{base['version']}",
        intent=str(data.get("intent") or DEFAULT),
        system=str(base["system"]),
        user=str(base["user"]),
        facts=tuple(facts),
        template_reply=" ".join(str(data["template_reply"]).split()),
    )


def template_reply(intent: str | None) -> tuple[Prompt, str]:
    """The deterministic fallback reply for `intent` and the prompt it comes from."""
    prompt = load_prompt(intent)
    return prompt, prompt.template_reply
