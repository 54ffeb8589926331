"""`triage init | import`: start a workspace from a team's labelled export, and load the export as history.

`init` writes taxonomy.yaml, policy.yaml, prompts/ and examples.csv from the export's labels. `import`
reads the export through `ml.imports`, reports what it dropped, writes the normalised CSV and, with
`--seed-labels`, stores the rows in Postgres as labelled tickets (see `seed_history` for what that
gives training and retraining). Heavy imports (pandas, the PII gate) happen inside the commands.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import shlex
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.cli.common import UsageError
from triage.labels import CHANNELS, IMPORT_REVIEWER
from triage.names import T_FEEDBACK, T_TICKETS, qualified
from triage.taxonomy import (
    BANK_WORKSPACE,
    DEFAULT_OOD_LABEL,
    DEFAULT_URGENCIES,
    EXAMPLES_FILE,
    LABEL_PATTERN,
    LABEL_RULE,
    TAXONOMY_FILE,
)

if TYPE_CHECKING:
    import pandas as pd

    from ml.imports import ColumnMap, ImportReport
    from triage.pii import MaskResult
    from triage.taxonomy import Taxonomy

POLICY_FILE = "policy.yaml"
PROMPTS = ("_base.yaml", "default.yaml")
_BATCH = 1000

TAXONOMY_HEADER = """\
# Taxonomy written by `triage init` from {source}: edit it, then train a model on it.
# Intents are listed in class-index order; a model trained on this file stores a copy, so the
# registry knows the label set of every model version. Validated with `file: line N` errors.
#
#   name, version                a name for this label set, and its version (bump it on any change)
#   out_of_scope                 the label meaning "none of these" (not an intent; tunes abstention)
#   urgencies                    urgency labels, least urgent first; [] = the model has no urgency head
#   sla_minutes                  minutes to a human answer per urgency, e.g. {{low: 2880, critical: 30}}
#   intents.<name>.description   what the intent covers (shown in the console and the model card)
#   intents.<name>.automate      false: never auto-resolved or drafted, whatever the policy says
#   intents.<name>.sla_minutes   minutes to a human answer; default: sla_minutes of the urgency
#   intents.<name>.prompt        drafting prompt file in prompts/ (default: prompts/<name>.yaml,
#                                then prompts/default.yaml)
"""
POLICY_HEADER = """\
# Starter policy written by `triage init`: edit the thresholds and rules before you let it act
# (lower auto_resolve only once the model has earned it; see the bank example in workspaces/bank/).
"""

IMPORT_DESCRIPTION = """\
Read a labelled export (CSV, JSONL or Parquet), check its labels against the workspace's taxonomy
(or --taxonomy), and print how many rows were kept and dropped (empty text, missing label, unknown
label, duplicate). --out writes the kept rows as CSV. --seed-labels stores them in Postgres once
(a re-import adds nothing): a triage.tickets row per row (id import:<sha256 prefix>, text PII masked)
and a triage.feedback row (kind 'correct', reviewer 'import', dated --created-at-col or now). No
decision is written, as no model decided them: `triage train --from-db` trains on them, but the
retrain DAG reads labels of decisions only, so it sees them through its base data (every row the
champion was trained on, which `triage train` stores with the model), and the data quality gate flags
feedback without a decision in the windows that hold their dates: seed before the first model.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="write a starter workspace (taxonomy, policy, prompts, examples) from an export")
    p.add_argument("dir", type=Path, metavar="DIR", help="workspace folder to write")
    p.add_argument("--from", dest="source", type=Path, required=True, metavar="FILE",
                   help="labelled export: CSV, JSONL or Parquet")
    _mapping_args(p)
    p.add_argument("--name", default=None, help="taxonomy name (default: the folder's name)")
    p.add_argument("--examples", type=int, default=5, metavar="N",
                   help="example texts per intent written to examples.csv, PII masked (default: 5)")
    p.add_argument("--force", action="store_true", help="write into DIR even when it is not empty")
    p.set_defaults(func=init)

    p = sub.add_parser("import", help="read a labelled export: report, write the normalised CSV, seed history",
                       description=IMPORT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", type=Path, metavar="FILE", help="labelled export: CSV, JSONL or Parquet")
    _mapping_args(p)
    p.add_argument("--out", type=Path, default=None, metavar="FILE.csv",
                   help="write the kept rows as CSV (text, intent, urgency, created_at: those mapped)")
    p.add_argument("--taxonomy", type=Path, default=None, metavar="FILE",
                   help="taxonomy the labels must be in; others are dropped (default: the workspace's taxonomy.yaml)")
    p.add_argument("--seed-labels", action="store_true",
                   help="store the rows in Postgres as labelled tickets (triage.tickets + triage.feedback), once")
    p.add_argument("--channel", choices=CHANNELS, default="email",
                   help="channel of the seeded tickets (default: email)")
    p.set_defaults(func=import_cmd)


def _mapping_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-col", action="append", dest="text_cols", metavar="COL",
                   help="column holding the text; repeat to join several with newlines (default: text)")
    p.add_argument("--subject-col", default=None, metavar="COL", help="subject column, put before the text")
    p.add_argument("--intent-col", default="intent", metavar="COL", help="intent label column (default: intent)")
    p.add_argument("--urgency-col", default=None, metavar="COL",
                   help="urgency label column (default: urgency, when the file has it)")
    p.add_argument("--created-at-col", default=None, metavar="COL",
                   help="when each ticket was created (default: the import time)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N rows of the file")


def _read(path: Path, args: argparse.Namespace, taxonomy: Taxonomy | None) -> tuple[
        pd.DataFrame, ImportReport, ColumnMap]:
    from ml import imports

    frame = imports.read_table(path, args.limit)
    cmap = imports.ColumnMap(text=args.text_cols or ["text"], subject=args.subject_col, intent=args.intent_col,
                             urgency=args.urgency_col, created_at=args.created_at_col)
    cmap = imports.with_default_urgency(cmap, frame.columns)
    rows, report = imports.normalise(frame, cmap, taxonomy=taxonomy, source=str(path), limit=args.limit)
    return rows, report, cmap


def _labels(rows: pd.DataFrame, head: str, source: Path, col: str) -> list[str]:
    """The observed labels of one head, checked to be usable as taxonomy names."""
    labels = sorted({str(v) for v in rows[head].dropna()}) if head in rows.columns else []
    bad = [lab for lab in labels if not re.match(LABEL_PATTERN, lab)]
    if bad:
        slug = re.sub(r"[^A-Za-z0-9_.\-]+", "_", bad[0]).strip("_.-")[:80] or "label"
        raise UsageError(f"{source} column {col!r}: {len(bad)} label(s) cannot be {head} names, e.g. {bad[0]!r} "
                         f"(use {LABEL_RULE}); rename them in the export, e.g. {slug!r}")
    return labels


def starter_taxonomy(rows: pd.DataFrame, cmap: ColumnMap, *, name: str, source: Path) -> Taxonomy:
    """Intents from the label column, sorted; urgencies low..critical where they fit, else sorted."""
    from pydantic import ValidationError

    from triage.taxonomy import IntentSpec, Taxonomy

    if cmap.intent is None:
        raise UsageError("init needs the intent labels: pass --intent-col COL")
    intents = [i for i in _labels(rows, "intent", source, cmap.intent) if i != DEFAULT_OOD_LABEL]
    if len(intents) < 2:
        raise UsageError(f"{source} column {cmap.intent!r} has {len(intents)} intent label(s) "
                         f"({', '.join(intents) or 'none'}); a taxonomy needs 2 or more: map another column "
                         "with --intent-col")
    urgencies = _labels(rows, "urgency", source, cmap.urgency) if cmap.urgency else []
    if set(urgencies) <= set(DEFAULT_URGENCIES):
        urgencies = [u for u in DEFAULT_URGENCIES if u in urgencies]
    if len(urgencies) == 1:
        raise UsageError(f"{source} column {cmap.urgency!r} has one urgency label ({urgencies[0]!r}); map a column "
                         "with 2 or more with --urgency-col, or leave it out")
    try:
        return Taxonomy(name=name, version="1", urgencies=urgencies, intents={i: IntentSpec() for i in intents})
    except ValidationError as exc:
        raise UsageError(f"--name {name!r}: {exc.errors()[0]['msg']}; pass --name with 1 to 80 characters") from None


def taxonomy_text(tax: Taxonomy, source: Path) -> str:
    """The taxonomy file: a header explaining each key, then every key written out (urgencies too)."""
    import yaml

    head = {"name": tax.name, "version": tax.version, "out_of_scope": tax.out_of_scope,
            "urgencies": list(tax.urgencies), "sla_minutes": dict(tax.sla_minutes)}
    intents = {"intents": dict.fromkeys(tax.intents)}
    text = [str(yaml.safe_dump(d, sort_keys=False, default_flow_style=flow, allow_unicode=True, width=110))
            for d, flow in ((head, None), (intents, False))]
    return TAXONOMY_HEADER.format(source=source.name) + text[0] + "\n" + text[1].replace(": null\n", ":\n")


def starter_policy_text(tax: Taxonomy) -> str:
    """The example policy's rules cut down to the labels `tax` has, at the example's default thresholds."""
    import yaml

    from triage.policy import load_policy

    bank = load_policy(BANK_WORKSPACE / POLICY_FILE)
    default = bank.spec.thresholds.default
    rules: list[dict[str, Any]] = []
    urg = list(tax.urgencies)
    if urg:
        rules.append({"id": f"escalate-{urg[-1]}", "when": {"urgency": [urg[-1]]}, "route": "escalate",
                      "reason": f"{urg[-1]} urgency goes straight to the on-call team"})
    rules += [
        {"id": "abstain-to-human", "when": {"abstained": True}, "route": "human_queue",
         "reason": "the model is not sure what this is"},
        {"id": "denied-to-human", "when": {"denied": True}, "route": "human_queue",
         "reason": "this intent is never automated"},
        {"id": "auto-resolve-confident",
         "when": {"confidence_at_least": "auto_resolve", **({"urgency": urg[: max(1, len(urg) // 2)]} if urg else {})},
         "route": "auto_resolve", "reason": "confident and routine" + (", not urgent" if urg else "")},
        {"id": "draft-when-fairly-sure", "when": {"confidence_at_least": "draft_for_review"},
         "route": "draft_for_review", "reason": "fairly sure; a person approves the drafted reply"},
    ]
    data = {"version": "1", "deny_intents": [],
            "thresholds": {"default": {"auto_resolve": default.auto_resolve,
                                       "draft_for_review": default.draft_for_review}},
            "rules": rules, "default": {"id": "fallback-human", "route": "human_queue", "reason": "no rule matched"}}
    body = str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True, width=110))
    text = (bank_header() + body).replace("\nrules:\n", "\n\nrules:\n").replace("\ndefault:", "\n\ndefault:")
    return POLICY_HEADER + text


def bank_header() -> str:
    """The example policy's leading comment block, which documents every key."""
    lines = (BANK_WORKSPACE / POLICY_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(itertools.takewhile(lambda ln: ln.startswith("#"), lines))


def examples_frame(rows: pd.DataFrame, tax: Taxonomy, n: int, names: bool) -> pd.DataFrame:
    """Up to `n` texts per intent (the export's first ones), in taxonomy order, PII masked."""
    cols = ["text", "intent", *(["urgency"] if "urgency" in rows.columns and tax.urgencies else [])]
    order = {name: i for i, name in enumerate(tax.intents)}
    picked = rows[rows["intent"].isin(list(order))].groupby("intent", sort=False).head(n)
    picked = picked.sort_values("intent", key=lambda s: s.map(order), kind="stable")[cols].reset_index(drop=True)
    picked["text"] = [r.text for r in _masked(picked["text"].tolist(), names)]
    return picked


def _masked(texts: list[str], names: bool) -> list[MaskResult]:
    from triage.pii import mask_many

    return [r for i in range(0, len(texts), 256) for r in mask_many(texts[i : i + 256], names=names)]


def _mapping_flags(cmap: ColumnMap, args: argparse.Namespace) -> list[str]:
    """The flags that map the export's columns as this run did (for the next commands)."""
    out = [f for c in cmap.text for f in ("--text-col", c)] if cmap.text != ["text"] else []
    for flag, value, default in (("--subject-col", cmap.subject, None), ("--intent-col", cmap.intent, "intent"),
                                 ("--urgency-col", args.urgency_col, None),
                                 ("--created-at-col", cmap.created_at, None), ("--limit", args.limit, None)):
        if value is not None and value != default:
            out += [flag, str(value)]
    return out


def _next_steps(path: Path, folder: Path, cmap: ColumnMap, args: argparse.Namespace, name: str) -> list[str]:
    q = shlex.quote
    mapping = " ".join(q(f) for f in _mapping_flags(cmap, args))
    mapping = f" {mapping}" if mapping else ""
    lines = [f"  export TRIAGE_WORKSPACE={q(str(folder))}"]
    tail = f"--taxonomy {q(str(folder / TAXONOMY_FILE))} -o {q(str(folder / 'model'))} --register"
    optional = "    # --seed-labels is optional: the export as labelled history in Postgres"
    if cmap.subject is None and len(cmap.text) == 1 and cmap.created_at is None:
        lines += [f"  triage import {q(str(path))}{mapping} --seed-labels{optional}",
                  f"  triage train --data {q(str(path))}{mapping} {tail}"]
    else:  # train reads one text column: train on the normalised CSV that import writes
        labels = q(str(folder / "labels.csv"))
        lines += [f"  triage import {q(str(path))}{mapping} --out {labels} --seed-labels{optional}",
                  f"  triage train --data {labels} {tail}"]
    lines += ["  triage models list", f"  triage models promote VERSION --reason {q(f'first model of {name}')}"]
    return lines


def init(args: argparse.Namespace) -> int:
    """Write a starter workspace from an export; refuse a non-empty folder without --force."""
    from triage.policy import bind, parse_policy
    from triage.settings import get_settings
    from triage.taxonomy import parse_taxonomy

    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file; pass a folder for the workspace")
    if folder.is_dir() and any(folder.iterdir()) and not args.force:
        raise UsageError(f"{folder} is not empty; pick a new folder, or pass --force to write "
                         f"{TAXONOMY_FILE}, {POLICY_FILE}, prompts/ and {EXAMPLES_FILE} into it")
    if args.examples < 0:
        raise UsageError(f"--examples {args.examples}: use 0 or more example texts per intent")
    rows, report, cmap = _read(args.source, args, None)
    name = args.name or folder.resolve().name
    tax = starter_taxonomy(rows, cmap, name=name, source=args.source)
    tax_text = taxonomy_text(tax, args.source)
    policy_text = starter_policy_text(tax)
    # Both files are checked as the worker will read them before anything is written.
    bind(parse_policy(policy_text, str(folder / POLICY_FILE)),
         [("workspace", parse_taxonomy(tax_text, str(folder / TAXONOMY_FILE)))])
    examples = examples_frame(rows, tax, args.examples, get_settings().pii_names)

    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    (folder / TAXONOMY_FILE).write_text(tax_text, encoding="utf-8")
    (folder / POLICY_FILE).write_text(policy_text, encoding="utf-8")
    for prompt in PROMPTS:
        shutil.copyfile(BANK_WORKSPACE / "prompts" / prompt, folder / "prompts" / prompt)
    examples.to_csv(folder / EXAMPLES_FILE, index=False)

    for line in report.lines():
        print(line)
    urg = ", ".join(tax.urgencies) or "none"
    print(f"wrote {folder / TAXONOMY_FILE} ({len(tax.intents)} intents; urgencies: {urg})")
    print(f"wrote {folder / POLICY_FILE} (starter rules; edit before it acts)")
    print(f"wrote {', '.join(str(folder / 'prompts' / p) for p in PROMPTS)} (the example's prompts: they speak "
          "for a retail bank; edit prompts/_base.yaml)")
    print(f"wrote {folder / EXAMPLES_FILE} ({len(examples)} examples, up to {args.examples} per intent, PII masked)")
    print("next: describe each intent in taxonomy.yaml (and `automate: false` for any never to automate), then")
    for line in _next_steps(args.source, folder.resolve(), cmap, args, name):
        print(line)
    return 0


def import_cmd(args: argparse.Namespace) -> int:
    """Read an export, print what was kept and dropped, write --out, seed Postgres with --seed-labels."""
    from ml.imports import UNKNOWN_LABEL
    from triage.settings import get_settings
    from triage.taxonomy import load_taxonomy

    settings = get_settings()
    tax_file = args.taxonomy or settings.taxonomy_file
    tax = load_taxonomy(tax_file)
    rows, report, _ = _read(args.file, args, tax)
    for line in report.lines():
        print(line)
    print(f"labels checked against {tax_file} (taxonomy {tax.name!r})")
    if report.dropped[UNKNOWN_LABEL]:
        print(f"  rows with labels it lacks were dropped: add those labels to {tax_file}, or set TRIAGE_WORKSPACE "
              "or --taxonomy to the right taxonomy")
    if args.out is not None:
        out = rows.copy()
        if "created_at" in out.columns:
            out["created_at"] = [t.isoformat() if t is not None and not _nat(t) else "" for t in out["created_at"]]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} rows to {args.out}")
    if args.seed_labels:
        if rows.empty:
            raise UsageError(f"--seed-labels: no rows of {args.file} are left to store (see the counts above)")
        from apps.cli.common import reachable_db_url

        url = reachable_db_url()
        tickets, feedback = seed_history(url, rows, source=args.file.name, channel=args.channel,
                                         names=settings.pii_names)
        print(f"seeded {qualified(T_TICKETS)}: {tickets} new ({len(rows) - tickets} already there); "
              f"{qualified(T_FEEDBACK)}: {feedback} new")
        print("  `triage train --from-db` trains on them; retraining reads labels of decisions only, so it sees "
              "them through the champion's training sample (see `triage import --help`)")
        print("  note: the data quality gate flags feedback without a decision in the windows holding these dates: "
              "seed before the first model is trained, or map --created-at-col to the tickets' own dates")
    return 0


def _nat(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def ticket_id(masked_text: str, intent: str | None, urgency: str | None) -> str:
    """`import:<sha256 prefix>` of the masked text and labels: the same row always gets the same id."""
    digest = hashlib.sha256("\0".join((masked_text, intent or "", urgency or "")).encode()).hexdigest()
    return f"import:{digest[:24]}"


def _sql() -> tuple[str, str]:
    from triage.db import insert_from_json

    tickets = insert_from_json(qualified(T_TICKETS), {
        "ticket_id": "text", "channel": "text", "subject_masked": "text", "body_masked": "text",
        "pii_counts": "jsonb", "metadata": "jsonb", "received_at": "timestamptz"}, conflict="ticket_id",
        returning="ticket_id")
    feedback = insert_from_json(qualified(T_FEEDBACK), {
        "event_id": "text", "ticket_id": "text", "kind": "text", "intent": "text", "urgency": "text",
        "reviewer": "text", "comment": "text", "created_at": "timestamptz"}, conflict="event_id",
        returning="event_id")
    return tickets, feedback


def seed_history(url: str, rows: pd.DataFrame, *, source: str, channel: str = "email", names: bool = True,
                 now: datetime | None = None) -> tuple[int, int]:
    """Store normalised rows as labelled history: (new tickets, new feedback rows); a re-import adds nothing.

    Each row becomes a `triage.tickets` row (id `import:<sha256 prefix>` of its masked text and labels;
    the text PII masked by triage.pii into body_masked; metadata {"source": "import", "file": FILE};
    received_at = its created_at, else the import time) and one `triage.feedback` row (kind 'correct'
    with its intent and urgency, reviewer 'import', dated the same). No decisions row is written: no
    model decided these tickets, and a made-up decision would count in the audit, canary and drift
    figures. So `triage train --from-db` (ml.data.from_db) trains on them, while the retrain DAG, which
    reads labels of decisions only (triage.labelled_decisions), sees them through its base data: every
    row the champion was trained on, stored with it by `triage train` (`ml.base_data`). The data quality
    gate leaves these rows out (their labels were checked here;
    it wants a decision behind every other feedback row).
    """
    from triage import db

    stamp = (now or datetime.now(UTC)).isoformat()
    masked = _masked(rows["text"].tolist(), names)
    intents = rows["intent"].tolist() if "intent" in rows.columns else [None] * len(rows)
    urgencies = rows["urgency"].tolist() if "urgency" in rows.columns else [None] * len(rows)
    created = rows["created_at"].tolist() if "created_at" in rows.columns else [None] * len(rows)
    tickets: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for m, intent, urgency, when in zip(masked, intents, urgencies, created, strict=True):
        intent, urgency = _opt(intent), _opt(urgency)
        tid = ticket_id(m.text, intent, urgency)
        at = when.isoformat() if when is not None and not _nat(when) else stamp
        tickets.append({"ticket_id": tid, "channel": channel, "subject_masked": "", "body_masked": m.text,
                        "pii_counts": m.counts, "metadata": {"source": IMPORT_REVIEWER, "file": source},
                        "received_at": at})
        feedback.append({"event_id": tid, "ticket_id": tid, "kind": "correct", "intent": intent, "urgency": urgency,
                         "reviewer": IMPORT_REVIEWER, "comment": f"imported from {source}", "created_at": at})
    tickets_sql, feedback_sql = _sql()
    new = [0, 0]
    with db.connect(url) as conn:
        for k, (sql, records) in enumerate(((tickets_sql, tickets), (feedback_sql, feedback))):
            for i in range(0, len(records), _BATCH):
                new[k] += len(conn.execute(sql, (json.dumps(records[i : i + _BATCH]),)).fetchall())
    return new[0], new[1]


def _opt(value: Any) -> str | None:
    return None if value is None or _nat(value) else str(value)
