"""A model keeps its base data (by fingerprint) and never trains on the holdout; a warm start is the whole model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ml import base_data, layout
from ml.data import from_frame
from ml.modeling import MultiHeadClassifier, load_trained, warm_start_heads
from ml.train import TrainingArgs, predict_logits, train


def test_holdout_is_stable_and_about_its_share() -> None:
    texts = [f"ticket number {i}" for i in range(2000)]
    chosen = [t for t in texts if base_data.in_holdout(t, 10)]
    assert chosen == [t for t in texts if base_data.in_holdout(t, 10)]
    assert 150 < len(chosen) < 250
    assert not any(base_data.in_holdout(t, 0) for t in texts)
    assert set(chosen) <= {t for t in texts if base_data.in_holdout(t, 20)}  # a larger share contains a smaller


def test_stored_rows_read_back_with_the_same_fingerprint(tmp_path: Path) -> None:
    texts = ["plain", "  leading and trailing  ", 'quotes " and, commas', "line\r\nbreaks\nand\ttabs", "NA", "null",
             "Zoë paid £5", "out of scope"]
    ds = from_frame(pd.DataFrame({"text": texts, "intent": ["a", "b", "a", "b", "a", None, "b", "oos"],
                                  "urgency": ["low", "low", "high", None, "high", "low", "high", "low"]}),
                    ood_label="oos", min_rows=1)
    path = base_data.write(tmp_path, ds, ood_label="oos", ood_head="intent")
    frame, back = base_data.read(path, label_cols=["intent", "urgency"], ood_label="oos")
    assert back.fingerprint() == ds.fingerprint() and back.texts == texts and back.ood == ds.ood
    assert path.read_bytes() == base_data.write(tmp_path, ds, ood_label="oos", ood_head="intent").read_bytes()


def test_model_folder_keeps_its_base_data_and_never_trained_on_the_holdout(tiny_model: Path) -> None:
    args = TrainingArgs(**json.loads((tiny_model / layout.TRAINING_ARGS).read_text()))
    frame, ds = base_data.read(tiny_model / layout.BASE_DATA, label_cols=args.label_cols, ood_label=args.ood_label)
    assert ds.fingerprint() == args.base_fingerprint == args.data_fingerprint  # trained on its --data: the same rows
    assert len(ds) == args.base_rows == 600 and list(frame.columns) == ["text", "intent", "urgency"]
    assert args.ood_label in set(frame["intent"])  # out-of-scope rows keep their label
    info = base_data.describe(ds, args.holdout_percent)
    assert (info["holdout_rows"], info["holdout_fingerprint"]) == (args.holdout_rows, args.holdout_fingerprint)
    assert 30 < args.holdout_rows < 90
    assert args.train_rows + args.val_rows + args.holdout_rows == args.base_rows
    reference = pd.read_csv(tiny_model / layout.REFERENCE)  # a sample of the rows it trained on
    assert not any(base_data.in_holdout(t, args.holdout_percent) for t in reference["text"])


def _logits(model_dir: Path, texts: list[str]) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoded = [tokenizer(t, truncation=True, max_length=96)["input_ids"] for t in texts]
    return predict_logits(load_trained(model_dir), encoded)


def test_a_warm_start_before_any_update_predicts_exactly_as_its_source(tiny_model: Path, tmp_path: Path) -> None:
    made = TrainingArgs(**json.loads((tiny_model / layout.TRAINING_ARGS).read_text()))
    _, ds = base_data.read(tiny_model / layout.BASE_DATA, label_cols=made.label_cols, ood_label=made.ood_label)
    out = tmp_path / "warm"
    # learning rates of 0: the one step taken changes nothing, so the model is the warm start itself
    args = TrainingArgs(output_dir=str(out), data=str(tiny_model / layout.BASE_DATA), base=str(tiny_model),
                        init_from=str(tiny_model), taxonomy=str(tiny_model / layout.TAXONOMY),
                        ood_label=made.ood_label, epochs=1, max_steps=1, lr_encoder=0.0, lr_heads=0.0,
                        batch_size=16, max_length=96, val_fraction=0.2, export=False, progress=False, threads=1)
    said: list[str] = []
    train(args, say=said.append, dataset=ds)
    assert any("warm start from" in s and "intent 18 of 18 labels" in s for s in said), said
    before, after = load_trained(tiny_model), load_trained(out)
    for key, value in before.state_dict().items():
        assert torch.equal(value, after.state_dict()[key]), key
    texts = ds.texts[:64]
    old, new = _logits(tiny_model, texts), _logits(out, texts)
    for head in old:
        assert np.array_equal(old[head], new[head]), head


def test_warm_start_copies_heads_by_label_and_new_labels_start_fresh(tiny_model: Path) -> None:
    source = load_trained(tiny_model)
    intents = layout.read_heads(tiny_model)["intent"]
    relabelled = [*reversed(intents[:5]), "brand_new_intent"]  # another order, five known labels and a new one
    torch.manual_seed(1)
    model = MultiHeadClassifier(source.encoder, 32, {"intent": relabelled})
    fresh = model.heads["intent"].weight.detach().clone()
    assert warm_start_heads(model, tiny_model) == {"intent": 5}
    for i, label in enumerate(relabelled[:5]):
        j = intents.index(label)
        assert torch.equal(model.heads["intent"].weight[i], source.heads["intent"].weight[j])
        assert torch.equal(model.heads["intent"].bias[i], source.heads["intent"].bias[j])
    assert torch.equal(model.heads["intent"].weight[5], fresh[5])
