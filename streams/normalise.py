"""Clean a ticket's text for the classifier: strip HTML, quoted replies and signatures.

Pure functions, no I/O. The goal is the customer's own words: markup, the thread they replied
to and their sign-off carry no intent and would make the classifier see noise.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_TAG_HINT = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?\s*>")
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
_SKIP_TAGS = frozenset({"script", "style", "head", "title"})

# A line that starts the quoted thread: everything from it on is somebody else's earlier text.
_QUOTE_HEADER = re.compile(
    r"^\s*(On\b.{0,200}\bwrote:\s*$"
    r"|-{2,}\s*Original Message\s*-{2,}"
    r"|-{2,}\s*Forwarded message\s*-{2,}"
    r"|From:\s.+$"
    r"|_{10,}\s*$)",
    re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r"^\s*>")
# A line that starts the signature block (RFC 3676 "-- " delimiter, sign-offs, device footers).
_SIGNATURE_START = re.compile(
    r"^\s*(--\s*$"
    r"|(best|kind|warm)?\s*regards,?\s*$"
    r"|(many\s+)?thanks( a lot| so much)?( in advance)?,?\s*$"
    r"|thank you,?\s*$"
    r"|cheers,?\s*$"
    r"|sincerely,?\s*$"
    r"|best( wishes)?,?\s*$"
    r"|all the best,?\s*$"
    r"|yours( truly| sincerely| faithfully)?,?\s*$"
    r"|sent from my \w+"
    r"|get outlook for \w+)",
    re.IGNORECASE,
)
# A sign-off only counts as a signature near the end (a name, a title, a phone line after it).
_MAX_SIGNATURE_LINES = 6
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Text content of an HTML fragment (block tags become line breaks); plain text is only unescaped."""
    if not _TAG_HINT.search(text):
        return html.unescape(text)
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def strip_quoted(text: str) -> str:
    """Drop the quoted thread: `>` lines and everything after an "On ... wrote:" style header."""
    kept: list[str] = []
    for line in text.split("\n"):
        if _QUOTE_HEADER.match(line) and kept and any(k.strip() for k in kept):
            break
        if _QUOTED_LINE.match(line):
            continue
        kept.append(line)
    return "\n".join(kept)


def strip_signature(text: str) -> str:
    """Drop a trailing signature block that starts with a delimiter or sign-off near the end."""
    lines = text.rstrip().split("\n")
    for i in range(len(lines) - 1, max(-1, len(lines) - 1 - _MAX_SIGNATURE_LINES), -1):
        if i > 0 and _SIGNATURE_START.match(lines[i]):
            head = "\n".join(lines[:i]).rstrip()
            if head:
                return head
    return "\n".join(lines)


def tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def normalise(text: str) -> str:
    """The customer's own words: HTML, quoted replies and signature removed, whitespace tidied.

    Never returns an empty string for non-blank input: when cleaning removes everything (a message
    that is all quote), the tidied original is kept so the classifier still has something to read.
    """
    plain = tidy(strip_html(text))
    cleaned = tidy(strip_signature(strip_quoted(plain)))
    return cleaned or plain
