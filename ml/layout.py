"""The files of a model folder, defined once; stdlib only so serving and the registry can use it.

A model folder holds the Hugging Face encoder (config.json, model.safetensors), the heads
(heads.safetensors), the tokenizer (tokenizer.json), the ONNX graphs, and small JSON files:
label maps, temperatures, abstention thresholds, metrics and the training arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from triage.taxonomy import MODEL_FILE

ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
TOKENIZER = "tokenizer.json"
LABEL_MAPS = "label_maps.json"
CALIBRATION = "calibration.json"
THRESHOLDS = "thresholds.json"
METRICS = "metrics.json"
TRAINING_ARGS = "training_args.json"
SERVING = "serving.json"
HEADS_WEIGHTS = "heads.safetensors"
REFERENCE = "reference.csv"
BASE_DATA = "base_data.csv.gz"  # every row the model was made from (`ml.base_data`)
TAXONOMY = MODEL_FILE  # the workspace taxonomy the model was trained on
CARD = "README.md"

# Files serving needs; a folder without them is not a model.
REQUIRED_FOR_SERVING = (ONNX_FP32, TOKENIZER, LABEL_MAPS, CALIBRATION, THRESHOLDS, SERVING)


def read_json(model_dir: Path, name: str) -> Any:
    path = model_dir / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: {model_dir} is not a complete model folder") from None


def write_json(model_dir: Path, name: str, data: Any) -> Path:
    path = model_dir / name
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read_heads(model_dir: Path) -> dict[str, list[str]]:
    """Head name -> labels in class-index order, from `label_maps.json`."""
    raw = read_json(model_dir, LABEL_MAPS)
    return {head: [m["id2label"][str(i)] for i in range(len(m["id2label"]))] for head, m in raw.items()}


def label_maps(heads: dict[str, list[str]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {
        head: {
            "id2label": {str(i): lab for i, lab in enumerate(labels)},
            "label2id": {lab: i for i, lab in enumerate(labels)},
        }
        for head, labels in heads.items()
    }


def check_model_dir(model_dir: Path) -> None:
    """Raise FileNotFoundError naming the first missing file."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist; pass a folder written by `triage train`")
    for name in REQUIRED_FOR_SERVING:
        if not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"{model_dir / name} is missing: {model_dir} is not a complete model folder "
                "(train one with `triage train`)"
            )
