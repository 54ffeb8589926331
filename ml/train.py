"""Fine-tune one encoder with a head per label column; calibrate, pick the abstention threshold,
export to ONNX (+ int8) with a parity check, and write a self-describing model folder."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ml import base_data, calibrate, imports, layout
from ml.data import DataError, Dataset, fit_taxonomy, from_db, from_frame, load_file, split
from ml.serving import softmax
from ml.training_args import TrainingArgs as TrainingArgs
from ml.training_args import default_base as default_base

Say = Callable[[str], None]


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """Shuffle, sort by length within pools of `pool` batches, cut batches, shuffle the batches."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    batches: list[list[int]] = []
    span = batch_size * pool
    for start in range(0, len(idx), span):
        chunk = sorted(idx[start : start + span], key=lambda i: lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def pad(encoded: list[list[int]], rows: list[int]) -> tuple[Any, Any]:
    import torch

    width = max(len(encoded[i]) for i in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, i in enumerate(rows):
        seq = encoded[i]
        ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[r, : len(seq)] = 1
    return ids, mask


def predict_logits(model: Any, encoded: list[list[int]], batch_size: int = 64) -> dict[str, np.ndarray[Any, Any]]:
    import torch

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out = {h: np.zeros((len(encoded), len(v)), dtype=np.float32) for h, v in model.heads_labels.items()}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad(encoded, rows)
            for h, lg in zip(model.head_names, model(ids, mask), strict=True):
                out[h][rows] = lg.numpy()
    return out


def head_scores(logits: dict[str, np.ndarray[Any, Any]], ds: Dataset) -> dict[str, dict[str, float]]:
    from sklearn.metrics import f1_score

    scores: dict[str, dict[str, float]] = {}
    for head in ds.heads:
        y = np.array(ds.label_ids(head))
        keep = y >= 0
        if not keep.any():
            continue
        pred = logits[head].argmax(1)
        scores[head] = {
            "accuracy": float((pred[keep] == y[keep]).mean()),
            "macro_f1": float(f1_score(y[keep], pred[keep], average="macro", labels=sorted(set(y[keep].tolist())),
                                       zero_division=0)),
        }
    return scores


def load_dataset(args: TrainingArgs, say: Say | None = None) -> Dataset:
    """The training rows: production labels, or `--data` (through `ml.imports` for JSONL or mapped columns)."""
    if args.from_db:
        from triage.settings import get_settings

        return from_db(get_settings().db_url(), label_cols=args.label_cols, ood_label=args.ood_label)
    if not args.data:
        raise DataError("no training data: pass --data FILE (CSV, JSONL or Parquet) or --from-db")
    path = Path(args.data)
    if args.intent_col is None and args.urgency_col is None:
        if args.limit is None and path.suffix.lower() in (".csv", ".parquet", ".pq"):
            return load_file(path, text_col=args.text_col, label_cols=args.label_cols, ood_label=args.ood_label)
        return from_frame(imports.read_table(path, args.limit), text_col=args.text_col, label_cols=args.label_cols,
                          ood_label=args.ood_label, source=str(path))
    frame = imports.read_table(path, args.limit)
    present = [h for h in ("intent", "urgency") if h in args.label_cols and h in frame.columns]
    cmap = imports.ColumnMap(text=[args.text_col],
                             intent=args.intent_col or ("intent" if "intent" in present else None),
                             urgency=args.urgency_col or ("urgency" if "urgency" in present else None))
    rows, report = imports.normalise(frame, cmap, source=str(path), limit=args.limit)
    if say is not None:
        for line in report.lines():
            say(line)
    return from_frame(rows, text_col="text", label_cols=list(cmap.labels), ood_label=args.ood_label,
                      source=str(path), row_offset=1)


def masked(ds: Dataset) -> Dataset:
    """The same rows with PII replaced by typed placeholders (what the stream classifies)."""
    from triage.pii import mask_many

    texts = [r.text for i in range(0, len(ds.texts), 256) for r in mask_many(ds.texts[i : i + 256])]
    return Dataset(texts=texts, labels=ds.labels, heads=ds.heads, ood=ds.ood)


def _quiet_transformers() -> None:
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()  # type: ignore[attr-defined]


def train(args: TrainingArgs, say: Say = print, dataset: Dataset | None = None) -> dict[str, Any]:
    """Train, calibrate, export and write the model folder `args.output_dir`; returns metrics."""
    # OpenMP threads that spin while waiting cost several times the work on shared cores; this only
    # takes effect when torch is first loaded here (the CLI and bootstrap import it lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from ml.modeling import MultiHeadClassifier, load_base, warm_start_heads

    _quiet_transformers()
    started = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    ds = dataset if dataset is not None else load_dataset(args, say)
    if args.mask_pii and not args.from_db:
        ds = masked(ds)
    from triage.settings import get_settings

    taxonomy, ds, taxonomy_source = fit_taxonomy(
        ds, explicit=Path(args.taxonomy) if args.taxonomy else None, workspace=get_settings().taxonomy_file,
        name=Path(args.data).stem if args.data else "production-labels", ood_label=args.ood_label)
    say(f"taxonomy: {taxonomy.name} ({len(taxonomy.intents)} intents), {taxonomy_source}")
    args.label_cols = list(ds.heads)
    args.data_fingerprint = ds.fingerprint()
    base_ds, ds = leave_out_holdout(args, ds, say)
    train_ds, val_ds = split(ds, args.val_fraction, args.seed)
    args.train_rows, args.val_rows = len(train_ds), len(val_ds)
    say(f"data: {len(ds)} rows ({args.train_rows} train, {args.val_rows} validation), heads: "
        + ", ".join(f"{h} ({len(v)} labels)" for h, v in ds.heads.items())
        + (f", {sum(ds.ood)} out-of-scope rows" if any(ds.ood) else ""))

    source = args.init_from or args.base  # a warm start takes the whole model: encoder, tokenizer, heads
    tokenizer = AutoTokenizer.from_pretrained(source)
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.no_padding()
    backend.enable_truncation(max_length=args.max_length)
    enc_train = [e.ids for e in backend.encode_batch(train_ds.texts)]
    enc_val = [e.ids for e in backend.encode_batch(val_ds.texts)]

    encoder, hidden = load_base(source)
    model = MultiHeadClassifier(encoder, hidden, ds.heads, dropout=args.dropout)
    if args.init_from:
        copied = warm_start_heads(model, Path(args.init_from))
        say(f"warm start from {args.init_from}: encoder and "
            + ", ".join(f"{h} {copied[h]} of {len(v)} labels" for h, v in ds.heads.items()))
    if args.freeze_word_embeddings:
        word_embeddings = getattr(getattr(model.encoder, "embeddings", None), "word_embeddings", None)
        if word_embeddings is not None:
            word_embeddings.weight.requires_grad_(False)
    y_train = {h: torch.tensor(train_ds.label_ids(h), dtype=torch.long) for h in ds.heads}

    head_params = list(model.heads.parameters())
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm")
    enc_named = [(n, p) for n, p in model.encoder.named_parameters() if p.requires_grad]
    enc_decay = [p for n, p in enc_named if not any(k in n for k in no_decay)]
    enc_plain = [p for n, p in enc_named if any(k in n for k in no_decay)]
    optimizer = torch.optim.AdamW([
        {"params": enc_decay, "lr": args.lr_encoder, "weight_decay": args.weight_decay},
        {"params": enc_plain, "lr": args.lr_encoder, "weight_decay": 0.0},
        {"params": head_params, "lr": args.lr_heads, "weight_decay": args.weight_decay},
    ])
    steps_per_epoch = math.ceil(len(train_ds) / args.batch_size)
    total = steps_per_epoch * args.epochs
    if args.max_steps is not None:
        total = min(total, args.max_steps)
    warmup = max(1, int(total * args.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
    rng = random.Random(args.seed)
    lengths = [len(e) for e in enc_train]

    best_f1, best_state, best_epoch, bad_epochs, step = -1.0, None, 0, 0, 0
    history: list[dict[str, Any]] = []
    # A bar only on a terminal: into a log file (`triage up`'s .triage/logs) it would be hundreds of
    # carriage-return frames on one line; the one line per epoch below is printed either way.
    bar = tqdm(total=total, desc="train", unit="step", disable=not (args.progress and sys.stderr.isatty()),
               file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    stop_reason = "epochs"
    for epoch in range(1, args.epochs + 1):
        model.train()
        running = 0.0
        for n, rows in enumerate(bucketed_batches(lengths, args.batch_size, rng), start=1):
            ids, mask = pad(enc_train, rows)
            outs = model(ids, mask)
            loss = sum((loss_fn(lg, y_train[h][rows]) for h, lg in zip(model.head_names, outs, strict=True)
                        if (y_train[h][rows] >= 0).any()), torch.zeros(()))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{running / n:.4f}")
            if step >= total:
                if args.max_steps is not None:
                    stop_reason = "max_steps"
                break
            if args.time_budget_s is not None and time.monotonic() - started > args.time_budget_s:
                stop_reason = "time_budget"
                break
        scores = head_scores(predict_logits(model, enc_val), val_ds)
        macro = float(np.mean([s["macro_f1"] for s in scores.values()])) if scores else 0.0
        history.append({"epoch": epoch, "step": step, "train_loss": running / max(1, n), "val_macro_f1": macro,
                        **{f"val_{h}_accuracy": s["accuracy"] for h, s in scores.items()}})
        bar.write(f"epoch {epoch}: loss {running / max(1, n):.4f}, validation macro-F1 {macro:.4f} "
                  + " ".join(f"{h}-acc {s['accuracy']:.4f}" for h, s in scores.items()))
        if macro > best_f1 + 1e-6:
            best_f1, best_epoch, bad_epochs = macro, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= args.patience:
                stop_reason = "early_stopping"
                break
        if stop_reason in ("max_steps", "time_budget"):
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    train_seconds = time.monotonic() - started
    say(f"trained {step} steps in {train_seconds:.0f}s; best epoch {best_epoch} (macro-F1 {best_f1:.4f}), "
        f"stopped: {stop_reason}")

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout.write_json(out, layout.TAXONOMY, taxonomy.to_json())
    store_base_data(out, base_ds, args)
    val_logits = predict_logits(model, enc_val)
    metrics = finish(model, tokenizer, args, train_ds, val_ds, val_logits, out)
    metrics.update({"train_seconds": round(train_seconds, 1), "steps": step, "best_epoch": best_epoch,
                    "stop_reason": stop_reason, "history": history})
    layout.write_json(out, layout.METRICS, metrics)
    write_card(out, args, metrics)
    say(f"model written to {out}")
    return metrics


def leave_out_holdout(args: TrainingArgs, ds: Dataset, say: Say) -> tuple[Dataset, Dataset]:
    """The model's base data (`args.base_data`, else `ds`) and the rows of `ds` to train on: those outside the
    holdout (`ml.base_data`). Records the holdout's size and fingerprint in `args`."""
    base_ds = ds
    if args.base_data is not None:
        _, base_ds = base_data.read(Path(args.base_data), label_cols=args.label_cols, ood_label=args.ood_label)
        if args.mask_pii and not args.from_db:
            base_ds = masked(base_ds)
    kept, _ = base_data.split_holdout(ds, args.holdout_percent)
    _, holdout = base_data.split_holdout(base_ds, args.holdout_percent)
    args.base_rows, args.holdout_rows, args.holdout_fingerprint = len(base_ds), len(holdout), holdout.fingerprint()
    if args.holdout_percent:
        say(f"holdout: {args.holdout_rows} of {len(base_ds)} base rows ({args.holdout_percent} % by a hash of the "
            f"text) are never trained on ({len(ds) - len(kept)} left out of this run's {len(ds)} rows)")
    if len(kept) < 2:
        raise DataError(f"{len(ds)} rows leave {len(kept)} outside the holdout; add rows or lower --holdout-percent")
    return base_ds, kept


def store_base_data(out: Path, base_ds: Dataset, args: TrainingArgs) -> None:
    """Write the base data into the model folder and record the fingerprint of the rows as stored, which is what
    a retrain checks (`lifecycle.retrain.base_data`)."""
    path = base_data.write(out, base_ds, ood_label=args.ood_label, ood_head=_ood_head(args, base_ds))
    args.base_fingerprint = base_data.read(path, label_cols=args.label_cols, ood_label=args.ood_label)[1].fingerprint()


def finish(model: Any, tokenizer: Any, args: TrainingArgs, train_ds: Dataset, val_ds: Dataset,
           val_logits: dict[str, np.ndarray[Any, Any]], out: Path) -> dict[str, Any]:
    """Calibrate, threshold, save, export and parity-check; returns the validation metrics."""
    model.save(out)
    tokenizer.save_pretrained(str(out))
    layout.write_json(out, layout.SERVING, {"max_length": args.max_length, "inputs": ["input_ids", "attention_mask"],
                                            "outputs": {h: f"logits_{h}" for h in model.head_names}})
    metrics: dict[str, Any] = {"validation": {}}
    temperatures: dict[str, float] = {}
    thresholds: dict[str, float | None] = {}
    for head in model.head_names:
        y = np.array(val_ds.label_ids(head))
        keep = y >= 0
        lg = val_logits[head]
        t = calibrate.fit_temperature(lg[keep], y[keep])
        temperatures[head] = t
        before = softmax(lg)
        after = softmax(lg, t)
        from sklearn.metrics import f1_score

        pred = lg.argmax(1)
        m: dict[str, Any] = {
            "accuracy": float((pred[keep] == y[keep]).mean()) if keep.any() else None,
            "macro_f1": float(f1_score(y[keep], pred[keep], average="macro", zero_division=0)) if keep.any() else None,
            "ece_before": calibrate.ece(before[keep], y[keep]),
            "ece_after": calibrate.ece(after[keep], y[keep]),
            "temperature": t,
            "rows": int(keep.sum()),
        }
        thresholds[head] = None
        if args.ood_label is not None and head == _ood_head(args, val_ds):
            is_ood = np.array(val_ds.ood)
            rows = keep | is_ood
            correct = np.zeros(len(y), dtype=bool)
            correct[keep] = pred[keep] == y[keep]
            thr = calibrate.abstention_threshold(after.max(1)[rows], correct[rows], is_ood[rows],
                                                 args.target_ood_recall)
            thresholds[head] = thr["threshold"]
            m["abstention"] = thr
        metrics["validation"][head] = m
    layout.write_json(out, layout.CALIBRATION, {"temperature": temperatures, "fitted_on": "validation",
                                                "ece_bins": 15})
    layout.write_json(out, layout.THRESHOLDS, thresholds)
    layout.write_json(out, layout.TRAINING_ARGS, asdict(args))
    write_reference(out, train_ds, args)
    if args.export:
        from ml.export import ParityError, export_onnx, parity_check

        export_onnx(model, out)
        try:
            metrics["parity"] = parity_check(model, out, val_ds.texts, val_ds.labels, threads=args.threads or 2)
        except ParityError as exc:
            metrics["parity_error"] = str(exc)
            layout.write_json(out, layout.METRICS, metrics)  # a refused export still says how the model did
            raise
        if args.abstention == "mahalanobis":
            head = _ood_head(args, val_ds)
            metrics["validation"][head]["ood"] = fit_ood(out, train_ds, val_ds, head, val_logits[head], args)
    return metrics


def fit_ood(out: Path, train_ds: Dataset, val_ds: Dataset, head: str, val_logits: np.ndarray[Any, Any],
            args: TrainingArgs) -> dict[str, Any]:
    """Fit the distance scorer on the training rows' features as the served int8 graph computes them, pick
    its threshold on validation, and store it with the model (`ml.ood`); returns what it measured.

    With out-of-scope rows in validation, the threshold is chosen as the softmax one is (accuracy x
    recall, or the `target_ood_recall`), on minus the distance; without any, it is the in-scope
    validation distance at a 3 % false-alarm rate. The softmax baseline is measured beside it."""
    from ml.ood import DEFAULT_FALSE_ALARM, MahalanobisScorer, detection_report
    from ml.serving import Classifier

    clf = Classifier.load(out, threads=args.threads or 2, int8=True)
    y = np.array(train_ds.label_ids(head))
    keep = y >= 0
    scorer = MahalanobisScorer.fit(clf.features([t for t, k in zip(train_ds.texts, keep, strict=True) if k]),
                                   y[keep], head)
    distance = scorer.score(clf.features(val_ds.texts))
    y_val = np.array(val_ds.label_ids(head))
    is_ood = np.array(val_ds.ood, dtype=bool)
    ins = (y_val >= 0) & ~is_ood
    meta: dict[str, Any] = {"fitted_on": f"{int(keep.sum())} training rows (int8 features)"}
    if is_ood.any() and ins.any():
        rows = ins | is_ood
        correct = np.zeros(len(y_val), dtype=bool)
        correct[ins] = val_logits[ins].argmax(1) == y_val[ins]
        chosen = calibrate.abstention_threshold(-distance[rows], correct[rows], is_ood[rows], args.target_ood_recall)
        threshold = None if chosen["threshold"] is None else -float(chosen["threshold"])
        meta["chosen_by"] = chosen.get("objective")
        confidence = softmax(val_logits, 1.0).max(1)
        meta["validation"] = {"mahalanobis": detection_report(distance[ins], distance[is_ood]),
                              "softmax": detection_report(-confidence[ins], -confidence[is_ood])}
    else:
        threshold = float(np.quantile(distance[ins], 1.0 - DEFAULT_FALSE_ALARM)) if ins.any() else None
        meta["chosen_by"] = f"in-scope validation false alarm {DEFAULT_FALSE_ALARM:.0%}"
    if threshold is not None:
        meta["validation_false_alarm"] = round(float((distance[ins] > threshold).mean()), 4) if ins.any() else None
        if is_ood.any():
            meta["validation_ood_recall"] = round(float((distance[is_ood] > threshold).mean()), 4)
    scorer.with_threshold(threshold).save(out, meta)
    return {"threshold": threshold, **meta}


def _ood_head(args: TrainingArgs, ds: Dataset) -> str:
    """The head whose column carries the out-of-scope label: `intent` if present, else the first."""
    return "intent" if "intent" in ds.heads else next(iter(ds.heads))


def write_reference(out: Path, ds: Dataset, args: TrainingArgs) -> None:
    """A sample of the training data (text + labels) for the drift monitor's reference window."""
    frame = ds.frame()
    if args.ood_label is not None:
        head = _ood_head(args, ds)
        frame[head] = [args.ood_label if o else v for v, o in zip(frame[head], ds.ood, strict=True)]
    for col in ("intent", "urgency"):
        if col not in frame.columns:
            frame[col] = None
    if len(frame) > args.reference_rows:
        frame = frame.sample(n=args.reference_rows, random_state=args.seed)
    frame[["text", "intent", "urgency"]].to_csv(out / layout.REFERENCE, index=False)


def write_card(out: Path, args: TrainingArgs, metrics: dict[str, Any]) -> None:
    """README.md: what the model is, what it was trained on, how well it does and where it fails."""
    val = metrics.get("validation", {})
    lines = [
        f"# Triage classifier ({Path(args.output_dir).name})", "",
        "One BERT encoder with a mean-pooled linear head per label column; confidences are "
        "temperature-scaled; served as ONNX int8 by `ml.serving`.", "",
        "## Data", "",
        f"- source: {'production labels (triage.feedback + triage.tickets)' if args.from_db else args.data}",
        f"- rows: {args.train_rows} train, {args.val_rows} validation (stratified), fingerprint "
        f"`{args.data_fingerprint[:16]}`",
        f"- base data kept with the model (`base_data.csv.gz`): {args.base_rows} rows, fingerprint "
        f"`{args.base_fingerprint[:16]}`; holdout never trained on: {args.holdout_rows} rows "
        f"({args.holdout_percent} % by a hash of the text), fingerprint `{args.holdout_fingerprint[:16]}`"
        + (f"; warm-started from `{args.init_from}`" if args.init_from else ""),
        f"- heads: {', '.join(args.label_cols)}; out-of-scope label: {args.ood_label or 'none'}",
        f"- base model: `{args.base}`", "",
        "## Validation metrics", "",
        "| head | accuracy | macro-F1 | ECE before | ECE after | temperature | abstain below |",
        "|---|---|---|---|---|---|---|",
    ]
    thresholds = {h: m.get("abstention", {}).get("threshold") for h, m in val.items()}
    for h, m in val.items():
        thr = None if "ood" in m else thresholds.get(h)  # a distance scorer abstains instead (below)
        lines.append(f"| {h} | {_pct(m.get('accuracy'))} | {_pct(m.get('macro_f1'))} | {m['ece_before']:.4f} | "
                     f"{m['ece_after']:.4f} | {m['temperature']:.3f} | {'-' if thr is None else f'{thr:.3f}'} |")
    for h, m in val.items():
        if "ood" in m:
            o = m["ood"]
            lines.append(f"\nAbstention on {h}: Mahalanobis distance of the encoder's features to the nearest class "
                         f"(`ood.json`; threshold {o['threshold']}, chosen by {o['chosen_by']}), validation false "
                         f"alarm {_pct(o.get('validation_false_alarm'))}, out-of-scope recall "
                         f"{_pct(o.get('validation_ood_recall'))}.")
            for method, r in o.get("validation", {}).items():
                lines.append(f"- {method}: AUROC {r['auroc']:.4f}, FPR at 95 % recall {_pct(r['fpr_at_95_recall'])}, "
                             f"recall at 3 % false alarm {_pct(r['recall_at_3pct_false_alarm'])} (validation)")
        elif "abstention" in m and m["abstention"].get("threshold") is not None:
            a = m["abstention"]
            lines.append(f"\nAt the threshold, {h}: in-scope accuracy {_pct(a['in_scope_accuracy'])}, "
                         f"out-of-scope recall {_pct(a['ood_recall'])} (validation).")
    if "parity" in metrics:
        lines += ["", "## Export parity (validation)", "", "```", json.dumps(metrics["parity"], indent=1), "```"]
    lines += [
        "", "## Training", "",
        f"{metrics.get('steps', '?')} steps, best epoch {metrics.get('best_epoch', '?')}, "
        f"{metrics.get('train_seconds', '?')} s, stopped by {metrics.get('stop_reason', '?')}. "
        "All arguments: `training_args.json`.", "",
        "## Limits", "",
        "- Validation numbers come from the same distribution as the training data; production text drifts "
        "(see the drift reports) and the numbers there will be lower.",
        "- Temperature and threshold are fitted on the validation split that also chose the epoch, so they are "
        "slightly optimistic; `triage evaluate` on held-out data gives the honest numbers.",
        "- English only; texts are truncated to "
        f"{args.max_length} tokens. "
        + ("Out-of-scope detection is a distance from the known classes in feature space: requests close to a "
           "known intent's wording are not caught." if args.abstention == "mahalanobis" else
           "Out-of-scope detection is a confidence threshold, not a class: confidently wrong out-of-scope texts "
           "are not caught."),
        "- Trained on PII-masked text (placeholders, not real names or numbers), as the stream classifies it."
        if args.mask_pii or args.from_db else
        "- Trained on unmasked text; the stream classifies PII-masked text, so placeholders were never seen.",
    ]
    (out / layout.CARD).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"
