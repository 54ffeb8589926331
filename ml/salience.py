"""Which words drove a prediction: occlusion salience on the served classifier, computed on demand.

Each word is left out in turn; its salience is how much the calibrated probability of the predicted
label falls without it (negative: the label grows more likely without the word). One batch of
`words + 1` texts through the same ONNX model the worker serves, so it explains that model, not a proxy.
"""

from __future__ import annotations

import re
from typing import Any

from ml.serving import Classifier

MAX_WORDS = 120  # longer texts: the first ones (the model reads 128 tokens anyway)
_WORD = re.compile(r"\S+")


def word_salience(clf: Classifier, text: str, head: str = "intent", label: str | None = None) -> dict[str, Any]:
    """{"label", "probability", "words": [{"word", "start", "end", "salience"}]} for `label` (default: the top)."""
    if head not in clf.heads:
        raise ValueError(f"head {head!r}: the model has {', '.join(clf.heads)}")
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)][:MAX_WORDS]
    variants = [text] + [text[:s] + text[e:] for s, e in spans]
    probs = clf.probabilities(variants)[head]
    labels = clf.heads[head]
    idx = labels.index(label) if label in labels else int(probs[0].argmax())
    base = float(probs[0, idx])
    words = [{"word": text[s:e], "start": s, "end": e, "salience": round(base - float(probs[i + 1, idx]), 4)}
             for i, (s, e) in enumerate(spans)]
    return {"head": head, "label": labels[idx], "probability": round(base, 4), "words": words}
