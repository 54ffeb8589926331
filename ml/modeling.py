"""The multi-head classifier: one BERT encoder, a mean-pooled linear head per label column.

The MiniLM checkpoint's pooler is untrained, so heads read the attention-masked mean of the
last hidden states (what all-MiniLM-L6-v2 was trained to produce) instead of the [CLS] pooler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ml import layout


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-6)


class MultiHeadClassifier(nn.Module):
    """Encoder + one head per label column; `forward` returns logits per head in `heads` order."""

    def __init__(self, encoder: nn.Module, hidden_size: int, heads: dict[str, list[str]], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head_names = list(heads)
        self.heads_labels = {h: list(v) for h, v in heads.items()}
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({h: nn.Linear(hidden_size, len(labels)) for h, labels in heads.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.with_features(input_ids, attention_mask)[:-1]

    def with_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits per head, then the pooled features the heads read (what out-of-scope scores use)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        dropped = self.dropout(pooled)
        return (*(self.heads[h](dropped) for h in self.head_names), pooled)

    def save(self, out_dir: Path) -> None:
        """Encoder as a Hugging Face model (config carries the label maps), heads as safetensors."""
        config: Any = self.encoder.config
        config.triage_heads = self.heads_labels
        if len(self.head_names) >= 1:
            first = self.heads_labels[self.head_names[0]]
            config.id2label = dict(enumerate(first))
            config.label2id = {lab: i for i, lab in enumerate(first)}
        self.encoder.save_pretrained(out_dir)
        save_file({k: v.contiguous() for k, v in self.heads.state_dict().items()}, str(out_dir / layout.HEADS_WEIGHTS))
        layout.write_json(out_dir, layout.LABEL_MAPS, layout.label_maps(self.heads_labels))


class WithFeatures(nn.Module):
    """The classifier as exported: logits per head and the pooled features."""

    def __init__(self, model: MultiHeadClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.with_features(input_ids, attention_mask)


def load_base(base: str, *, with_pooler: bool = False) -> tuple[nn.Module, int]:
    """A Hugging Face encoder from a folder or id (offline unless the environment allows network)."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(base, add_pooling_layer=with_pooler)
    return encoder, int(encoder.config.hidden_size)


def load_trained(model_dir: Path) -> MultiHeadClassifier:
    """A model folder written by `MultiHeadClassifier.save`, in eval mode."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False)
    heads = layout.read_heads(model_dir)
    model = MultiHeadClassifier(encoder, int(encoder.config.hidden_size), heads)
    model.heads.load_state_dict(load_file(str(model_dir / layout.HEADS_WEIGHTS)))
    model.eval()
    return model


def warm_start_heads(model: MultiHeadClassifier, model_dir: Path) -> dict[str, int]:
    """Copy the heads of the model folder `model_dir` into `model`, row by row for the labels both share (matched
    by name, so a reordered label set is no problem; a label new to `model` keeps its fresh weights). Returns the
    rows copied per head of `model`."""
    old_heads = layout.read_heads(model_dir)
    weights = load_file(str(model_dir / layout.HEADS_WEIGHTS))
    copied: dict[str, int] = {}
    with torch.no_grad():
        for head, labels in model.heads_labels.items():
            linear = model.heads[head]
            old = {lab: i for i, lab in enumerate(old_heads.get(head, []))}
            weight, bias = weights.get(f"{head}.weight"), weights.get(f"{head}.bias")
            if not old or weight is None or bias is None:
                copied[head] = 0
                continue
            pairs = [(i, old[lab]) for i, lab in enumerate(labels) if lab in old]
            for new, prev in pairs:
                linear.weight[new] = weight[prev]
                linear.bias[new] = bias[prev]
            copied[head] = len(pairs)
    return copied
