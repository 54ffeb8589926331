"""`triage train` flags come from TrainingArgs: the same help, the same defaults, every old flag name."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from apps.cli import build_parser, main
from apps.cli.dataclass_args import dataclass_from_args
from ml.training_args import TrainingArgs, TrainingArgsError
from triage.errors import TriageError

COMMAND_ONLY = {"help", "register", "name", "reason"}  # flags of the command, not of the training run


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["train"]
    return parser


def _parse(*argv: str) -> TrainingArgs:
    return dataclass_from_args(TrainingArgs, _train_parser().parse_args(["--data", "d.csv", "-o", "m", *argv]))


def test_no_flag_means_the_dataclass_default() -> None:
    assert _parse() == TrainingArgs(output_dir="m", data="d.csv")


def test_help_and_default_shown_are_the_fields() -> None:
    actions = {a.dest: a for a in _train_parser()._actions}
    assert set(actions) - {f.name for f in dataclasses.fields(TrainingArgs)} == COMMAND_ONLY
    for f in dataclasses.fields(TrainingArgs):
        if "help" not in f.metadata:
            assert f.name not in actions
            continue
        action = actions[f.name]
        assert action.help is not None and action.help.startswith(f.metadata["help"])
        if f.default not in (dataclasses.MISSING, None) and not isinstance(f.default, bool):
            assert action.help.endswith(f"(default: {f.default})"), f.name
        if isinstance(f.default, bool):
            assert action.const is (not f.default), f.name  # a switch sets the opposite of the default


@pytest.mark.parametrize(("argv", "field", "value"), [
    (("--from-db",), "from_db", True),
    (("--output", "out"), "output_dir", "out"),
    (("--text-col", "body"), "text_col", "body"),
    (("--label-col", "intent", "--label-col", "topic"), "label_cols", ["intent", "topic"]),
    (("--ood-label", "oos", "--target-ood-recall", "0.8"), "target_ood_recall", 0.8),
    (("--base", "b"), "base", "b"),
    (("--epochs", "3"), "epochs", 3),
    (("--batch-size", "8"), "batch_size", 8),
    (("--lr-encoder", "1e-3"), "lr_encoder", 1e-3),
    (("--lr-heads", "0.5"), "lr_heads", 0.5),
    (("--max-length", "64"), "max_length", 64),
    (("--val-fraction", "0.2"), "val_fraction", 0.2),
    (("--patience", "4"), "patience", 4),
    (("--seed", "7"), "seed", 7),
    (("--threads", "2"), "threads", 2),
    (("--max-steps", "10"), "max_steps", 10),
    (("--train-embeddings",), "freeze_word_embeddings", False),
    (("--mask-pii",), "mask_pii", True),
    (("--no-progress",), "progress", False),
    (("--init-from", "champion"), "init_from", "champion"),
    (("--holdout-percent", "0"), "holdout_percent", 0),
])
def test_every_flag_sets_its_field(argv: tuple[str, ...], field: str, value: Any) -> None:
    if argv[0] == "--from-db":
        args = dataclass_from_args(TrainingArgs, _train_parser().parse_args(["--from-db", "-o", "m"]))
    else:
        args = _parse(*argv)
    assert getattr(args, field) == value


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"val_fraction": 0.5}, "--val-fraction 0.5"),
    ({"epochs": 0}, "--epochs and --batch-size"),
    ({"target_ood_recall": 1.5, "ood_label": "oos"}, r"--target-ood-recall 1.5: use a number in \(0, 1\]"),
    ({"target_ood_recall": 0.9}, "needs --ood-label"),
    ({"holdout_percent": 50}, "--holdout-percent 50: use a whole number from 0 to 49"),
])
def test_training_args_reject_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TrainingArgsError, match=match) as info:
        TrainingArgs(output_dir="m", **kwargs)
    assert isinstance(info.value, TriageError) and isinstance(info.value, ValueError)


def test_bad_flag_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text,intent\na,b\n")
    assert main(["train", "--data", str(data), "-o", str(tmp_path / "m"), "--val-fraction", "0.7"]) == 1
    assert capsys.readouterr().err == "triage: error: --val-fraction 0.7: use a number between 0 and 0.5\n"
