"""`triage train | evaluate | classify | models ...`: the classifier from the shell.

Heavy imports (torch, transformers, onnxruntime) happen inside the commands, never at import.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from apps.cli.common import UsageError
from apps.cli.dataclass_args import add_dataclass_arguments, dataclass_from_args
from ml.training_args import TrainingArgs
from triage.settings import get_settings


def register(sub: Any) -> None:
    _register_train(sub)
    _register_evaluate(sub)
    _register_classify(sub)
    _register_models(sub)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-col", default="text", help="column holding the text (default: text)")
    p.add_argument("--label-col", action="append", dest="label_cols", metavar="COL",
                   help="label column, one head each; repeat (default: intent and urgency, those present)")
    p.add_argument("--ood-label", default=None, metavar="LABEL",
                   help="label meaning out of scope: not a class, tunes the abstention threshold")


def _register_train(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune the classifier, calibrate, export ONNX int8")
    add_dataclass_arguments(p, TrainingArgs)
    p.add_argument("--register", action="store_true", help="register the result as a candidate")
    p.add_argument("--name", default=None, help="registry name (default: TRIAGE_MODEL_NAME)")
    p.add_argument("--reason", default="trained from the command line", help="why, for the registry's audit trail")
    p.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    from ml.train import train as run_training

    targs = dataclass_from_args(TrainingArgs, args)
    if targs.data is not None and not Path(targs.data).is_file():
        raise UsageError(f"--data {targs.data} does not exist; pass a CSV or Parquet file")
    metrics = run_training(targs, say=_say)
    out = Path(targs.output_dir)
    if args.register:
        from ml import registry

        s = get_settings()
        mv = registry.register(s.db_url(), out, name=args.name or s.model_name, changed_by=_who(),
                               reason=args.reason, metrics=metrics, models_dir=s.models_dir)
        _say(f"registered {mv.name} v{mv.version} as {mv.status}")
    print(json.dumps({"output": str(out), "validation": metrics["validation"]}, default=str))
    return 0


def _register_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model folder on labelled data (JSON on the last line)")
    p.add_argument("--model", type=Path, required=True, help="model folder")
    p.add_argument("--data", type=Path, required=True, help="CSV or Parquet file with labels")
    _data_args(p)
    p.add_argument("--fp32", action="store_true", help="use the fp32 ONNX graph instead of int8")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: TRIAGE_SERVING_THREADS)")
    p.set_defaults(func=evaluate)


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
    p.set_defaults(func=classify)


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
    q.set_defaults(func=models_list)
    q = msub.add_parser("show", help="one version in full (JSON)")
    common(q)
    q.add_argument("version", type=int)
    q.set_defaults(func=models_show)
    for action, helptext in (("promote", "make VERSION the champion (the old one is retired)"),
                             ("reject", "mark VERSION as rejected")):
        q = msub.add_parser(action, help=helptext)
        common(q)
        q.add_argument("version", type=int)
        q.add_argument("--reason", required=True, help="why, for the audit trail")
        q.add_argument("--by", default=None, help="who (default: current user)")
        q.set_defaults(func=models_promote if action == "promote" else models_reject)
    q = msub.add_parser("rollback", help="restore the previous champion (or --to VERSION)")
    common(q)
    q.add_argument("--to", type=int, default=None, dest="to_version")
    q.add_argument("--reason", required=True)
    q.add_argument("--by", default=None)
    q.set_defaults(func=models_rollback)


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
