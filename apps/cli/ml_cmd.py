"""`triage train | evaluate | classify | models ...`: the classifier from the shell.

Heavy imports (torch, transformers, onnxruntime) happen inside the commands, never at import.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apps.cli.common import UsageError
from triage.settings import get_settings


def register(sub: Any) -> None:
    _register_train(sub)
    _register_evaluate(sub)
    _register_classify(sub)
    _register_models(sub)


def _user_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the ml package's input errors into UsageError (one line, exit 1)."""

    def wrapped(args: argparse.Namespace) -> int:
        from ml.data import DataError
        from ml.registry import RegistryError

        try:
            return fn(args)
        except (DataError, RegistryError) as exc:
            raise UsageError(str(exc)) from None
        except RuntimeError as exc:
            if type(exc).__name__ == "ParityError":
                raise UsageError(
                    f"{exc}; the model folder is not fit to serve, retrain with more data or steps") from None
            raise

    return wrapped


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    p.add_argument("--label-col", action="append", dest="label_cols", metavar="COL",
                   help="label column, one head each; repeat (default: intent and urgency, those present)")
    p.add_argument("--ood-label", default=None, metavar="LABEL",
                   help="label meaning out of scope: not a class, tunes the abstention threshold")


def _register_train(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune the classifier, calibrate, export ONNX int8")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="CSV or Parquet file with a text column and label columns")
    src.add_argument("--from-db", action="store_true", help="train on production labels in PostgreSQL")
    _data_args(p)
    p.add_argument("--output", "-o", type=Path, required=True, help="model folder to write")
    p.add_argument("--base", default=None, help="Hugging Face model folder or id (default: offline all-MiniLM-L6-v2)")
    p.add_argument("--target-ood-recall", type=float, default=None,
                   help="abstain at the lowest threshold reaching this out-of-scope recall")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-encoder", type=float, default=8e-5)
    p.add_argument("--lr-heads", type=float, default=2e-3)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=2, help="epochs without validation macro-F1 gain before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--train-embeddings", action="store_true",
                   help="also update the word-embedding matrix (frozen by default; needed for a random-init base)")
    p.add_argument("--mask-pii", action="store_true",
                   help="mask PII in the texts (triage.pii) as the stream does before classifying")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--register", action="store_true", help="register the result as a candidate")
    p.add_argument("--name", default=None, help="registry name (default: TRIAGE_MODEL_NAME)")
    p.add_argument("--reason", default="trained from the command line")
    p.set_defaults(func=_user_errors(train))


def train(args: argparse.Namespace) -> int:
    from ml.train import TrainingArgs, default_base
    from ml.train import train as run_training

    if args.data is not None and not args.data.is_file():
        raise UsageError(f"--data {args.data} does not exist; pass a CSV or Parquet file")
    if not 0.0 < args.val_fraction < 0.5:
        raise UsageError(f"--val-fraction {args.val_fraction}: use a number between 0 and 0.5")
    if args.epochs < 1 or args.batch_size < 1:
        raise UsageError("--epochs and --batch-size must be at least 1")
    if args.target_ood_recall is not None and not 0.0 < args.target_ood_recall <= 1.0:
        raise UsageError(f"--target-ood-recall {args.target_ood_recall}: use a number in (0, 1]")
    if args.target_ood_recall is not None and args.ood_label is None:
        raise UsageError("--target-ood-recall needs --ood-label LABEL")
    targs = TrainingArgs(
        output_dir=str(args.output), data=str(args.data) if args.data else None, from_db=args.from_db,
        text_col=args.text_col, label_cols=args.label_cols or ["intent", "urgency"], ood_label=args.ood_label,
        target_ood_recall=args.target_ood_recall, base=args.base or default_base(), epochs=args.epochs,
        batch_size=args.batch_size, lr_encoder=args.lr_encoder, lr_heads=args.lr_heads, max_length=args.max_length,
        val_fraction=args.val_fraction, patience=args.patience, seed=args.seed, threads=args.threads,
        max_steps=args.max_steps, progress=not args.no_progress,
        freeze_word_embeddings=not args.train_embeddings, mask_pii=args.mask_pii,
    )
    metrics = run_training(targs, say=_say)
    if args.register:
        from ml import registry

        s = get_settings()
        mv = registry.register(s.db_url(), args.output, name=args.name or s.model_name, changed_by=_who(),
                               reason=args.reason, metrics=metrics, models_dir=s.models_dir)
        _say(f"registered {mv.name} v{mv.version} as {mv.status}")
    print(json.dumps({"output": str(args.output), "validation": metrics["validation"]}, default=str))
    return 0


def _register_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model folder on labelled data (JSON on the last line)")
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--data", type=Path, required=True, help="CSV or Parquet file with labels")
    _data_args(p)
    p.add_argument("--fp32", action="store_true", help="use the fp32 ONNX graph instead of int8")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: TRIAGE_SERVING_THREADS)")
    p.set_defaults(func=_user_errors(evaluate))


def evaluate(args: argparse.Namespace) -> int:
    from ml.data import load_file
    from ml.evaluate import evaluate as run_eval

    ds = load_file(args.data, text_col=args.text_col, label_cols=args.label_cols or ["intent", "urgency"],
                   ood_label=args.ood_label, min_rows=1)
    result = run_eval(args.model, ds, int8=not args.fp32, threads=args.threads or get_settings().serving_threads)
    print(json.dumps(result))
    return 0


def _register_classify(sub: Any) -> None:
    p = sub.add_parser("classify", help="classify one text per line from stdin; one JSON object per line")
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--fp32", action="store_true", help="use the fp32 ONNX graph instead of int8")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_user_errors(classify))


def classify(args: argparse.Namespace) -> int:
    from ml.serving import Classifier

    clf = Classifier.load(args.model, threads=args.threads or get_settings().serving_threads, int8=not args.fp32)
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        pred = clf.predict([text]).predictions[0]
        print(json.dumps({"text": text, **{h: p.model_dump() for h, p in pred.items()}}), flush=True)
    return 0


def _register_models(sub: Any) -> None:
    p = sub.add_parser("models", help="the model registry: list, show, promote, rollback, reject")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--name", default=None, help="model name (default: TRIAGE_MODEL_NAME)")

    q = msub.add_parser("list", help="every version with its status")
    common(q)
    q.set_defaults(func=_user_errors(models_list))
    q = msub.add_parser("show", help="one version in full (JSON)")
    common(q)
    q.add_argument("version", type=int)
    q.set_defaults(func=_user_errors(models_show))
    for action, helptext in (("promote", "make VERSION the champion (the old one is retired)"),
                             ("reject", "mark VERSION as rejected")):
        q = msub.add_parser(action, help=helptext)
        common(q)
        q.add_argument("version", type=int)
        q.add_argument("--reason", required=True, help="why, for the audit trail")
        q.add_argument("--by", default=None, help="who (default: current user)")
        q.set_defaults(func=_user_errors(models_promote if action == "promote" else models_reject))
    q = msub.add_parser("rollback", help="restore the previous champion (or --to VERSION)")
    common(q)
    q.add_argument("--to", type=int, default=None, dest="to_version")
    q.add_argument("--reason", required=True)
    q.add_argument("--by", default=None)
    q.set_defaults(func=_user_errors(models_rollback))


def models_list(args: argparse.Namespace) -> int:
    from ml import registry

    s = get_settings()
    name = args.name or s.model_name
    rows = registry.list_versions(s.db_url(), name)
    if not rows:
        print(f"no versions of {name}; train one with `triage train --register` or run `triage up`")
        return 0
    print(f"{'version':>7}  {'status':<9}  {'accuracy':>8}  {'updated':<19}  reason")
    for mv in rows:
        acc = mv.metrics.get("validation", {}).get("intent", {}).get("accuracy")
        acc_s = f"{acc * 100:.2f}%" if isinstance(acc, (int, float)) else "-"
        print(f"{mv.version:>7}  {mv.status:<9}  {acc_s:>8}  {mv.updated_at:%Y-%m-%d %H:%M:%S}  {mv.reason}")
    return 0


def models_show(args: argparse.Namespace) -> int:
    from ml import registry

    s = get_settings()
    mv = registry.get(s.db_url(), args.name or s.model_name, args.version)
    print(mv.model_dump_json(indent=2))
    return 0


def models_promote(args: argparse.Namespace) -> int:
    from ml import registry

    s = get_settings()
    mv = registry.promote(s.db_url(), args.name or s.model_name, args.version, changed_by=args.by or _who(),
                          reason=args.reason)
    print(f"{mv.name} v{mv.version} is now the champion")
    return 0


def models_reject(args: argparse.Namespace) -> int:
    from ml import registry

    s = get_settings()
    mv = registry.reject(s.db_url(), args.name or s.model_name, args.version, changed_by=args.by or _who(),
                         reason=args.reason)
    print(f"{mv.name} v{mv.version} is rejected")
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    from ml import registry

    s = get_settings()
    mv = registry.rollback(s.db_url(), args.name or s.model_name, to_version=args.to_version,
                           changed_by=args.by or _who(), reason=args.reason)
    print(f"rolled back: {mv.name} v{mv.version} is the champion again")
    return 0


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
