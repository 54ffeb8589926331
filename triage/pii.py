"""PII gate: find and mask the personal data that support tickets carry, before text leaves.

Structured kinds (e-mail, phone, card, IBAN, SSN, NINO, secrets, IP addresses, URLs with tokens, UK
driving licences, UK postcodes) are regex candidates plus checks (Luhn, IBAN mod-97, ABA routing,
SSN and NINO ranges, entropy, `ipaddress`). Kinds that need their context (dates of birth, bank
account numbers and sort codes, passport and US licence numbers, US and EU postcodes) are found
after the words that name them. Street addresses are number + street name + street type (UK, US,
French, German forms). Person names come from a statistical NER model (`triage.pii_ner`) plus context
rules: greetings, sign-offs, "my name is", titles, quoted reply headers.

Overlaps are resolved by a fixed type priority. Masks are typed and numbered per type in order of
appearance (`<EMAIL_1>`); the same value always gets the same mask, and `restore` puts values back.
`mask_many` masks a batch with one NER pass (what the stream worker calls); `mask` is one text.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from triage import pii_ner

logger = logging.getLogger(__name__)

PII_TYPES: Final = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "NINO", "SECRET", "PERSON", "ADDRESS", "POSTCODE",
                    "DOB", "BANK_ACCOUNT", "PASSPORT", "DRIVING_LICENCE", "IP", "URL")

_A = re.ASCII

_EMAIL_LOCAL: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-'")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
    _A,
)
# Numeric patterns start with `\d` and look behind after it, so the regex engine can skip to digits
# fast; `_NUM_BEFORE` says the first digit is not inside a word or a longer number.
_NUM_BEFORE = r"\d(?<![\w+]\d)(?<!\w-\d)(?<!\d[ .,]\d)"
# Each numeric pattern also has a `_NEXT` twin without the look-behind, tried right after a kept value
# and one separator, so that "4111111111111111 5555555555554444" yields two cards.
_CARD_REST = r"(?:[ .\-]?\d){12,22}(?!\w)(?![.\-]\d)"
_CARD = re.compile(_NUM_BEFORE + _CARD_REST, _A)
_CARD_NEXT = re.compile(r"\d" + _CARD_REST, _A)
# Starts at the check digits; the country code (maybe upper case and a space) is looked back at.
_IBAN = re.compile(
    r"\d\d(?:(?<=(?<![\w\-])[A-Za-z]{2}\d\d)|(?<=(?<![\w\-])[A-Z]{2} \d\d))(?:[ \-]?[A-Za-z0-9]){10,32}", _A
)
_SSN_REST = r"\d\d([ \-])\d\d\1\d{4}(?!\w)(?![\-.]\d)"
_SSN = re.compile(_NUM_BEFORE + _SSN_REST, _A)
_SSN_NEXT = re.compile(r"\d" + _SSN_REST, _A)
_SSN_BARE = re.compile(
    r"(?i)\b(?:ssn|ss\#|social[ ]security(?:[ ](?:number|no\.?|\#))?)[^\w\n]{0,6}(?:is[ ])?[^\w\n]{0,4}"
    r"(\d{9})(?!\w)",
    _A,
)
_NINO_HINT = re.compile(r"\d\d ?\d\d ?\d\d ?[A-Da-d]")
_NINO_PREFIX = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]", _A | re.IGNORECASE)
_NINO_NO_SUFFIX = re.compile(  # without the A-D suffix only after words that say it is one
    r"(?i)\b(?:nino|ni[ ]number|ni[ ]no\.?|national[ ]insurance(?:[ ]number|[ ]no\.?)?)[^\w\n]{0,6}(?:is[ ])?"
    r"[^\w\n]{0,4}([A-Z]{2}[ ]?\d{2}[ ]?\d{2}[ ]?\d{2})(?!\w)",
    _A,
)
_NINO = re.compile(
    r"(?<![\w\-])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z])[ ]?(\d{2})[ ]?(\d{2})[ ]?(\d{2})[ ]?([A-D])(?!\w)",
    _A | re.IGNORECASE,
)
_PHONE_INTL = re.compile(  # +44 ..., (+44) ..., 0044 ... (00 only with a separator after the country code)
    r"(?:\((?<!\w\()\+[1-9]\d{0,3}\)|\+(?<![\w+]\+)[1-9]\d{0,3}|0(?<![\w+\-]0)(?<!\d[ .,]0)0[1-9]\d{0,3}(?=[ .\-(]))"
    r"(?:[ .\-]?\((?:0|\d{1,4})\))?(?:[ .\-]?\d++){1,7}",
    _A,
)
_PHONE_PAREN = re.compile(r"\((?<![\w)]\()\d{2,5}\)[ .\-]?\d{3,4}[ .\-]?\d{3,5}(?!\w)(?![.\-]\d)", _A)
_NANP_REST = r"(?:(?<=1)[ .\-][2-9]\d\d|(?<=[2-9])\d\d)([ .\-])\d{3}\1\d{4}(?!\w)(?![.\-]\d)"
_PHONE_NANP = re.compile(r"\d(?<![\w+.\-]\d)(?<!\d \d)" + _NANP_REST, _A)
_PHONE_NANP_NEXT = re.compile(r"\d" + _NANP_REST, _A)
# A number glued to the word before it ("call me on07700900123", "tel07700900123").
_GLUED_WORDS: Final = ("on", "tel", "phone", "mob", "call", "ph", "cell", "whatsapp", "text", "number")
_PHONE_GLUED = re.compile(r"(?i)(?:on|tel|phone|mob|mobile|call|ph|cell|whatsapp|text|number|no)[:.]?"
                          r"((?:\+|00)?[1-9]\d{9,13}|0[1-9]\d{8,10})(?!\d)", _A)
_TRUNK_REST = r"[1-9]\d*+(?:[ .\-/]\d++){0,5}"
_PHONE_TRUNK = re.compile(r"0(?<![\w+.\-/,]0)(?<!\d 0)" + _TRUNK_REST, _A)
_PHONE_TRUNK_NEXT = re.compile(r"0" + _TRUNK_REST, _A)
# Known key formats, each with substrings that must occur before its regex runs.
_SECRET_KNOWN: Final[tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]] = tuple(
    (triggers, re.compile(pattern, _A)) for triggers, pattern in (
        (("sk-",), r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{20,}"),
        (("k_live_", "k_test_"), r"\b[rsp]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        (("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"),
         r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}\b"),
        (("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
        (("github_pat_",), r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
        (("_",), r"\b[a-z]{2,8}_(?:[a-z]{2,8}_)?(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[a-z])"
                 r"[A-Za-z0-9]{12,}\b"),
        (("glpat-",), r"\bglpat-[A-Za-z0-9_\-]{20,}"),
        (("xox",), r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
        (("AIza",), r"\bAIza[0-9A-Za-z_\-]{35}"),
        (("eyJ",), r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
        (("PRIVATE KEY-----",),
         r"-----BEGIN[ A-Z]{0,30}PRIVATE KEY-----[\s\S]{0,8000}?-----END[ A-Z]{0,30}PRIVATE KEY-----"),
    )
)
_SECRET_BEARER = re.compile(r"(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]{16,}=*)", _A)
# `key: value` / `key=value`: found from the separator, then the key is read back from it.
_KV_VALUE = re.compile(r"[:=][ \t]*[\"']?([^\s\"',;<>`]{4,200})", _A)
_KV_KEY = re.compile(r"(?i)(?<![A-Za-z0-9_\-])([A-Za-z0-9_\-]{2,60})[\"']?(?:[ \t]+(?:is|was))?[ \t]*\Z", _A)
# "my password is hunter2": found from " is"/" was", then the words before are checked.
_SAID_VALUE = re.compile(r"(?i)[ \t]+(?:is|was)[ \t]+[\"']?([^\s\"',;<>`]{6,200})", _A)
_SAID_KEY = re.compile(
    r"(?i)\b(?:password|passcode|passphrase|pwd|api[ _\-]?key|secret[ _\-]?key|access[ _\-]?token|token)\Z", _A
)
_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_=\-])[A-Za-z0-9+/_\-]{24,}+={0,2}", _A)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ID_LIKE = re.compile(r"[A-Z]{1,4}-[0-9a-f]{6,}|[0-9a-f]+|[0-9]+|[A-Za-z]+(?:[_\-/][A-Za-z]+)*", _A)
_AMOUNT = re.compile(r"\+\d+[.,]\d{1,2}")
_PLACEHOLDER = re.compile(r"<([A-Z]+)_(\d+)>")

_KV_KEYWORDS: Final = ("apikey", "api_key", "api-key", "secret", "token", "password", "passwd", "pwd",
                       "access_key", "accesskey", "private_key", "credential")
_KV_HINTS: Final = ("key", "secret", "token", "passw", "passc", "pwd", "credential")
_KV_NOT_VALUES: Final = frozenset({"bearer", "basic", "none", "null", "required", "expired", "invalid"})
# Longest E.164 number (with country code) for some calling codes; others may have up to 15 digits.
_E164_MAX: Final = (("1", 11), ("31", 11), ("32", 11), ("33", 11), ("34", 11), ("44", 12), ("61", 11),
                    ("353", 12))
_BAD_NINO_PREFIXES: Final = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
_BAD_SSNS: Final = frozenset({"078051120", "219099999", "123456789"})
# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


@dataclass(frozen=True, slots=True)
class PIIMatch:
    """One detected value: its type, its span in the original text, and the text itself."""

    type: str
    start: int
    end: int
    value: str


@dataclass(frozen=True, slots=True)
class MaskResult:
    """Masked text, how many values of each type were found, and placeholder -> original value."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)
    mapping: dict[str, str] = field(default_factory=dict)
    found: list[PIIMatch] = field(default_factory=list)


def luhn_ok(digits: str) -> bool:
    """True when `digits` (ASCII digits only) passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """True when the compact, upper-case `iban` has its country's length and a valid mod-97 checksum."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSN validity rules: no 000/666/9xx area, no 00 group, no 0000 serial, no known test numbers."""
    return (area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
            and area + group + serial not in _BAD_SSNS)


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _group_ends(text: str, start: int, end: int, seps: str) -> list[int]:
    """Offsets in (start, end) where a separator from `seps` ends a digit group."""
    return [i for i in range(start + 1, end) if text[i] in seps and text[i - 1].isdigit()]


def _digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


Span = tuple[int, int]


def _scan(pattern: re.Pattern[str], text: str, accept: Callable[[re.Match[str]], Span | None],
          follow: re.Pattern[str] | None = None) -> Iterator[Span]:
    """Matches of `pattern` that `accept` keeps (maybe shortened); the search resumes after each kept span.

    Right after a kept span and one space or dash, `follow` (the pattern without its look-behind) is
    tried first, so a value directly after another one is not hidden by "not inside a number".
    """
    pos = 0
    after: int | None = None
    while True:
        m = follow.match(text, after) if follow is not None and after is not None else None
        if m is None and (m := pattern.search(text, pos)) is None:
            return
        span = accept(m)
        after = None
        if span is None:
            pos = m.start() + 1
            continue
        yield span
        pos = span[1]
        if text[pos : pos + 1] in (" ", "-") and text[pos + 1 : pos + 2].isdigit():
            after = pos + 1


def _accept_ssn(m: re.Match[str]) -> Span | None:
    v = m.group()
    return m.span() if ssn_ok(v[:3], v[4:6], v[7:]) else None


def _card_ok(digits: str) -> bool:
    """13-19 digits, Luhn-valid, not one repeated digit, and not starting with 0 (no issuer uses MII 0)."""
    return 13 <= len(digits) <= 19 and digits[0] != "0" and len(set(digits)) > 1 and luhn_ok(digits)


def _card_grouping(number: str, strict: bool) -> bool:
    """Printed card layouts: one block, fours (last group shorter), 4-4-5, or 4-6-5 / 4-6-4 (Amex, Diners).

    Unless `strict`, also any grouping with one kind of separator and groups of 3+ digits; that keeps
    "6061 666-12-2680" (a PIN, then an SSN-like number) from reading as one card.
    """
    groups = re.split(r"[ .\-]", number)
    sizes = tuple(len(g) for g in groups)
    if (len(sizes) == 1 or sizes in ((4, 6, 5), (4, 6, 4), (4, 4, 5))
            or (all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4)):
        return True
    return not strict and min(sizes) >= 3 and len({c for c in number if not c.isdigit()}) == 1


def _accept_card(m: re.Match[str]) -> Span | None:
    s, e = m.span()
    if _card_grouping(m.group(), strict="." in m.group()) and _card_ok(_digits(m.group())):
        return s, e
    # A card run on into more digits ("4111 1111 1111 1111 12/27"): try whole groups.
    text = m.string
    for cut in reversed(_group_ends(text, s, e, " ")):
        if _card_grouping(text[s:cut], strict=True) and _card_ok(_digits(text[s:cut])):
            return s, cut
    return None


def _cards(text: str) -> Iterator[Span]:
    return _scan(_CARD, text, _accept_card, _CARD_NEXT)


def _accept_iban(m: re.Match[str]) -> Span | None:
    text = m.string
    s = m.start() - (3 if text[m.start() - 1] == " " else 2)
    length = IBAN_LENGTHS.get(text[s : s + 2].upper())
    if length is None:
        return None
    n, i, e = 0, s, m.end()
    while i < e and n < length:
        if text[i].isalnum():
            n += 1
        i += 1
    if n < length or (i < len(text) and text[i].isalnum()):
        return None
    compact = "".join(c for c in text[s:i] if c.isalnum()).upper()
    return (s, i) if iban_ok(compact) else None


def _ibans(text: str) -> Iterator[Span]:
    return _scan(_IBAN, text, _accept_iban)


def _ssns(text: str) -> Iterator[Span]:
    yield from _scan(_SSN, text, _accept_ssn, _SSN_NEXT)
    lower = text.lower()
    if "ssn" not in lower and "ss#" not in lower and "social security" not in lower:
        return
    for m in _SSN_BARE.finditer(text):
        v = m.group(1)
        if ssn_ok(v[:3], v[3:5], v[5:]):
            yield m.span(1)


def _ninos(text: str) -> Iterator[Span]:
    for hint in _NINO_HINT.finditer(text):
        s = hint.start()
        for start in (s - 2, s - 3):
            m = _NINO.match(text, start) if start >= 0 else None
            if m is not None and m.end() == hint.end() and m.group(1).upper() not in _BAD_NINO_PREFIXES:
                yield m.span()
                break
    lower = text.lower()
    if "nino" in lower or "ni n" in lower or "national insurance" in lower:
        for m in _NINO_NO_SUFFIX.finditer(text):
            prefix = m.group(1)[:2]
            if _NINO_PREFIX.fullmatch(prefix) and prefix.upper() not in _BAD_NINO_PREFIXES:
                yield m.span(1)


def _phone_prefix(m: re.Match[str], lo: int, hi: int, same_seps: bool) -> Span | None:
    """The longest prefix of the match, cut at a space, with lo..hi digits (and one separator kind)."""
    text, (s, e) = m.string, m.span()
    ends = list(reversed(_group_ends(text, s, e, " ")))
    if e == len(text) or not (text[e].isalnum() or text[e] == "_"):  # else the last group runs into a word
        ends.insert(0, e)
    for end in ends:
        candidate = text[s:end]
        n = len(_digits(candidate.replace("(0)", "", 1)))
        if n > hi:
            continue
        if n < lo:
            return None
        if same_seps and len({c for c in candidate if not c.isdigit()}) > 1:
            continue
        return s, end
    return None


def _accept_intl(m: re.Match[str]) -> Span | None:
    if _AMOUNT.fullmatch(m.group()):  # "+2500.00" is an amount
        return None
    digits = _digits(m.group())
    extra = 2 if digits.startswith("00") else 0  # the international call prefix is not in E.164
    longest = next((n for cc, n in _E164_MAX if digits.startswith(cc, extra)), 15)
    return _phone_prefix(m, 8 + extra, longest + extra, same_seps=False)


def _phones(text: str) -> Iterator[Span]:
    if "+" in text or "00" in text:
        yield from _scan(_PHONE_INTL, text, _accept_intl)
    if "(" in text:
        for m in _PHONE_PAREN.finditer(text):
            if 9 <= len(_digits(m.group())) <= 12:
                yield m.span()
    yield from _scan(_PHONE_NANP, text, lambda m: m.span(), _PHONE_NANP_NEXT)
    yield from _scan(_PHONE_TRUNK, text, lambda m: _phone_prefix(m, 10, 12, same_seps=True), _PHONE_TRUNK_NEXT)
    lower = text.lower()
    if any(w in lower for w in _GLUED_WORDS):
        yield from (m.span(1) for m in _PHONE_GLUED.finditer(text))


def _looks_secret_value(value: str, sep: str) -> bool:
    """Whether the value after `password:`/`token=` looks like a secret rather than a word of prose."""
    value = value.rstrip(".,!?:;)]}")
    if value.lower() in _KV_NOT_VALUES or _PLACEHOLDER.fullmatch(value):
        return False
    if sep == "=":
        return len(value) >= 4
    return len(value) >= 6 and (
        any(c.isdigit() for c in value) or not value.isalnum() or any(c.isupper() for c in value[1:])
    )


def _secrets_known(text: str) -> Iterator[Span]:
    for triggers, pattern in _SECRET_KNOWN:
        if any(t in text for t in triggers):
            yield from (m.span() for m in pattern.finditer(text))


def _secrets_kv(text: str) -> Iterator[Span]:
    """Values after `api_key=`, `password:`, `Bearer`, "my password is"."""
    lower = text.lower()
    if "bearer" in lower or "basic" in lower:
        yield from (m.span(1) for m in _SECRET_BEARER.finditer(text))
    if not any(k in lower for k in _KV_HINTS):
        return
    if "=" in text or ":" in text:
        for m in _KV_VALUE.finditer(text):
            s = m.start()
            key = _KV_KEY.search(text, max(0, s - 70), s)
            if (key is not None and any(k in key.group(1).lower() for k in _KV_KEYWORDS)
                    and _looks_secret_value(m.group(1), text[s])):
                yield m.span(1)
    if " is" in lower or " was" in lower:
        for m in _SAID_VALUE.finditer(text):
            s = m.start()
            if _SAID_KEY.search(text, max(0, s - 20), s) and _looks_secret_value(m.group(1), ":"):
                yield m.span(1)


# Short secrets named by the words before them: "OTP 902114", "PIN. Was it 7713?", "the code was 3310",
# "Security word: Marmalade", "password Winter2026!Ops". The value comes within a few words of its label.
_SHORT_SECRET_LABEL = re.compile(
    r"(?i)(?<![\w\-])(?:pin(?:[ \t]+(?:code|number))?|otp|one[ \-]?time[ \t]+(?:pass)?code|passcode|pass[ \t]+code|"
    r"(?:verification|security|auth(?:entication|orisation|orization)?|sms|login|access|confirmation|door|"
    r"lockbox|alarm|gate|backup|recovery|pac|transfer|porting|2fa|mfa)[ \t]+code|pac|cvv2?|cvc2?|csc|"
    r"(?<!error[ \t])(?<!promo[ \t])(?<!discount[ \t])"
    r"(?<!voucher[ \t])(?<!tracking[ \t])(?<!postal[ \t])(?<!zip[ \t])(?<!sort[ \t])(?<!country[ \t])(?<!area[ \t])"
    r"(?<!product[ \t])(?<!reference[ \t])(?<!discount)(?<!qr[ \t])code)(?![\w\-])")
_WORD_SECRET_LABEL = re.compile(
    r"(?i)\b(?:password|passphrase|passwd|pwd|security[ \t]+(?:word|answer|phrase)|memorable[ \t]+(?:word|answer|"
    r"phrase|information)|secret[ \t]+(?:word|answer|question[ \t]+answer)|security[ \t]+question[ \t]+answer)\b")
_SHORT_SECRET_VALUE = re.compile(r"(?<![\w.,/:\-£$€#+])(?<!\d )(\d{4,8}|\d{3}(?:[ \-]\d{3}){1,2}|[A-Z]{2,4}\d{4,8}|"
                                 r"(?=[A-Z0-9\-]*\d)(?=[A-Z0-9\-]*[A-Z])[A-Z0-9]{2,5}(?:-[A-Z0-9]{2,5}){1,3})"
                                 r"(?![\w/%]|[.,:\-]\d)", _A)
_WORD_SECRET_VALUE = (r"[ \t]*[\"'“]?([^\s\"'”,;<>`]{4,64}?)[\"'”]?(?=[\s,;]|[.!?](?:\s|$)|$)")
_WORD_SECRET_NEXT = re.compile(_WORD_SECRET_VALUE)  # "password Winter2026!Ops"
_WORD_SECRET_SAID = re.compile(r"(?:[:=,]|\b(?:is|was|to|as)\b)" + _WORD_SECRET_VALUE)  # "... you set is X"
_NOT_SHORT_SECRET_BEFORE = re.compile(r"(?i)\b(?:order|ref|reference|ticket|case|invoice|claim|booking|no\.?|#|"
                                      r"version|v|model|room|flight|year|since|in|on|by|until|of)[ \t]*\Z")
_WORD_NOT_SECRET: Final = frozenset({"reset", "changed", "wrong", "incorrect", "expired", "locked", "blocked",
                                     "not", "still", "the", "my", "your", "a", "an", "it", "that", "this",
                                     "working", "correct", "right", "again", "forgotten", "forgot", "being",
                                     "been", "rejected", "accepted", "required", "needed", "sent", "same"})


def _secrets_labelled(text: str) -> Iterator[Span]:
    """Codes and words that a label before them says are secret (see _SHORT_SECRET_LABEL)."""
    if any(c.isdigit() for c in text):
        for m in _SHORT_SECRET_LABEL.finditer(text):
            end = text.find("\n", m.end())
            window = (m.end(), min(m.end() + 40, end if end >= 0 else len(text)))
            v = _SHORT_SECRET_VALUE.search(text, *window)
            if v is not None and not _NOT_SHORT_SECRET_BEFORE.search(text, max(0, v.start() - 12), v.start()):
                yield v.span(1)
    for m in _WORD_SECRET_LABEL.finditer(text):
        end = text.find("\n", m.end())
        stop = min(m.end() + 40, end if end >= 0 else len(text))
        named = m.group().lower().startswith(("security", "memorable", "secret"))
        for pattern in (_WORD_SECRET_NEXT, _WORD_SECRET_SAID):
            v = pattern.match(text, m.end(), stop) if pattern is _WORD_SECRET_NEXT else pattern.search(
                text, m.end(), stop)
            value = v.group(1).rstrip(".,!?:;)") if v is not None else ""
            if not value or value.lower() in _WORD_NOT_SECRET or _PLACEHOLDER.fullmatch(value):
                continue
            mixed = any(c.isdigit() for c in value) or not value.isalpha() or any(c.isupper() for c in value[1:])
            if mixed or (named and (value[:1].isupper() or pattern is _WORD_SECRET_SAID)):
                yield v.start(1), v.start(1) + len(value)  # type: ignore[union-attr]
                break


def _secrets_generic(text: str) -> Iterator[Span]:
    """Long high-entropy tokens: mixed case with digits, or long hex, that are not ids or words."""
    for m in _TOKEN.finditer(text):
        token = m.group().rstrip("=")
        if _UUID.fullmatch(token) or (_ID_LIKE.fullmatch(token) and not _is_hex_secret(token)):
            continue
        lower = any(c.islower() for c in token)
        upper = any(c.isupper() for c in token)
        digit = any(c.isdigit() for c in token)
        entropy = _entropy(token)
        if ((lower and upper and digit and entropy >= 3.5) or _is_hex_secret(token)
                or (len(token) >= 32 and lower + upper + digit >= 2 and entropy >= 4.2)):
            yield m.span()


def _is_hex_secret(token: str) -> bool:
    return (len(token) >= 32 and all(c in "0123456789abcdefABCDEF" for c in token)
            and any(c.isdigit() for c in token) and any(c.isalpha() for c in token) and _entropy(token) >= 2.5)


def _emails(text: str) -> Iterator[Span]:
    """Anchored on each '@': the domain by regex, the local part by walking back (fast on long text)."""
    at = text.find("@")
    while at > 0:
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        while start < at and text[start] in ".'":
            start += 1
        if domain is not None and start < at:
            yield start, domain.end()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


# --- Kinds found after the words that name them ------------------------------------------------------
# Between a label and its value: separators and filler words ("account number: ", "DOB is ").
_GAP = (r"(?:[ \t]*(?:[:#=\-–.(]|\bis\b|\bwas\b|\bnumber\b|\bnum\b|\bno\b\.?|\bnr\b|\bcode\b"
        r"|\bending(?:[ \t]+in)?\b))*[ \t]*")
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})|\d{4}[\-/.]\d{1,2}[\-/.]\d{1,2}"
         r"|\d{1,2}(?:st|nd|rd|th)?(?:[ \t]+of)?[ \t]+" + _MONTH + r",?[ \t]+\d{4}"
         r"|" + _MONTH + r"[ \t]+\d{1,2}(?:st|nd|rd|th)?,?[ \t]+\d{4})")
_US_STATES: Final = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY",
    "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH",
    "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR",
)
_UK_POSTCODE = r"(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?[ \t]?\d[ABD-HJLNP-UW-Z]{2})"
_LABELLED: Final[tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]] = tuple(
    (kind, triggers, re.compile("(?:" + label + ")" + _GAP + "(" + value + r")(?![\w\-/])", _A | re.IGNORECASE))
    for kind, triggers, label, value in (
        ("DOB", ("born", "dob", "d.o.b", "birth", "geb", "nacimiento", "naissance", "né", "nascita", "geboorte",
                 "urodzenia"),
         r"\b(?:born(?:[ \t]+on)?|dob|d\.o\.b\.?|date[ \t]+of[ \t]+birth|birth[ \t]?date|birthday|geburtsdatum|"
         r"geb\.|geboren(?:[ \t]+am)?|fecha[ \t]+de[ \t]+nacimiento|date[ \t]+de[ \t]+naissance|n[ée]e?[ \t]+le|"
         r"data[ \t]+di[ \t]+nascita|geboortedatum|data[ \t]+urodzenia)(?![\w])", _DATE),
        ("BANK_ACCOUNT", ("sort", "s/c"), r"(?:\bsort(?:[ \t\-]?code)?|\bs/c)\b", r"\d{2}[ \-]?\d{2}[ \-]?\d{2}"),
        ("BANK_ACCOUNT", ("bsb",), r"\bbsb\b", r"\d{3}[ \-]?\d{3}"),
        ("BANK_ACCOUNT", ("account", "acct", "a/c", "acc ", "checking", "savings"),
         r"(?:\b(?:checking|savings|current|bank)[ \t]+)?(?:\baccount|\bacct|\ba/c|\bacc)\b"
         r"|\b(?:checking|savings)\b",
         r"\d{6,17}"),
        ("BANK_ACCOUNT", ("routing", "aba", "rtn", "transit"), r"\b(?:routing|aba|rtn|transit)\b", r"\d{9}"),
        ("DRIVING_LICENCE", ("licen", "dl"),
         r"\b(?:driv(?:er'?s?|ing)[ \t]+licen[cs]e|licen[cs]e|dl)\b",
         r"(?:[A-Z][ \t]?)?\d{3}(?:[ \t]\d{3}){2,4}|(?=(?:[A-Z\-]*\d){4})[A-Z0-9][A-Z0-9\-]{4,18}[A-Z0-9]"),
        ("POSTCODE", ("post", "zip", "plz"), r"\b(?:post[ \t]?code|postal[ \t]+code|zip(?:[ \t]?code)?|plz)\b",
         _UK_POSTCODE + r"|\d{5}(?:-\d{4})?|\d{4}[ \t]?[A-Z]{2}|\d{4}"),
    )
)
_SORT_AND_ACCOUNT = re.compile(r"(?<![\w\-])(\d{2}-\d{2}-\d{2})[ \t]*[,/|]?[ \t]*(\d{8})(?!\w)", _A)
_UK_POSTCODE_ANY = re.compile(r"(?<![\w\-])" + _UK_POSTCODE + r"(?![\w\-])", _A)
_CA_POSTCODE = re.compile(r"(?<![\w\-])[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ \-]?\d[ABCEGHJ-NPRSTV-Z]\d"
                          r"(?![\w\-])", _A)
_EIRCODE = re.compile(r"(?<![\w\-])(?:[AC-FHKNPRTV-Y]\d{2}|D6W)[ \t]?(?=[0-9AC-FHKNPRTV-Y]*\d)[0-9AC-FHKNPRTV-Y]{4}"
                      r"(?![\w\-])", _A)
_UK_POSTCODE_LOWER = re.compile(r"(?<![\w\-])" + _UK_POSTCODE.replace("[ \\t]?", "[ \\t]") + r"(?![\w\-])",
                                _A | re.IGNORECASE)
_US_ZIP = re.compile(r"\b(?:" + "|".join(_US_STATES) + r")[ \t]+(\d{5}(?:-\d{4})?)(?![\w\-])", _A)
# After an address: "75008 Paris", "10115 Berlin", "1012 AB Amsterdam", "D-80331 München".
_EU_POSTCODE = re.compile(r"(?<![\w\-])((?:[A-Z]{1,2}-)?\d{4,6}(?:[ \t][A-Z]{2})?|\d\d-\d{3}|\d{3}[ \t]\d{2}"
                          r"|\d{4}-\d{3}|\d{3}-\d{4})"
                          r"(?=[ \t]+[A-ZÀ-Ý][a-zà-ÿ]|[ \t]*(?:\n|$|[.,;](?:\s|$)))")
_US_LICENCE_SHAPE = re.compile(r"(?<![\w\-])[A-Z]\d{3}-\d{3,4}-\d{2,4}(?:-\d{2,3})?(?:-\d)?(?![\w\-])", _A)
_UK_LICENCE = re.compile(r"(?<![A-Z0-9])[A-Z9]{5}\d[0156]\d{4}[A-Z9]{2}\d[A-Z]{2}(?![A-Z0-9])", _A)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"(?<![\w.])(?:" + _OCTET + r"\.){3}" + _OCTET + r"(?!\w|\.\d)",
                   _A)
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])", _A)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'`]+", _A | re.IGNORECASE)
_URL_PERSONAL = re.compile(
    r"(?i)[?&#;](?:[\w\-]*(?:token|key|sig|signature|session|sid|auth|code|otp|email|mail|user|uid|id|reset|invite|"
    r"magic|login|secret|pass|account|acct|phone|name|dob|birth|address|postcode|zip))[\w\-]*=[^&#\s]{4,}"
    r"|[?&#;][\w\-]+=[^&#\s]*(?:@|%40)"  # an e-mail address in any parameter
    r"|[?&#;][\w\-]+=(?=[^&#\s]*\d)(?=[^&#\s]*[A-Za-z])[A-Za-z0-9_\-.~%+/]{12,}"  # a long opaque value
    r"|[?&#;][\w\-]+=(?=[^&#\s]*\d)(?=[^&#\s]*[a-z])(?=[^&#\s]*[A-Z])[A-Za-z0-9_\-~%+/]{8,}"  # mixed case
    r"|/(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[a-z])(?=[A-Za-z0-9_\-]*[A-Z])[A-Za-z0-9_\-]{12,}(?=[/?#]|$)"
    r"|/(?:join|invite|reset|verify|confirm|magic|activate|unsubscribe|share|s|l|t)/(?=[A-Za-z0-9_\-]*\d)"
    r"(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{8,}"
    r"|/(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{20,}(?:/|$)", _A)
_ABA_WEIGHTS: Final = (3, 7, 1, 3, 7, 1, 3, 7, 1)


def aba_ok(digits: str) -> bool:
    """True when nine digits pass the ABA routing-number checksum."""
    return len(digits) == 9 and sum(int(d) * w for d, w in zip(digits, _ABA_WEIGHTS, strict=True)) % 10 == 0


def _labelled(text: str, lower: str, kinds: tuple[str, ...]) -> Iterator[Span]:
    for kind, triggers, pattern in _LABELLED:
        if kind not in kinds or not any(t in lower for t in triggers):
            continue
        for m in pattern.finditer(text):
            value = m.group(1)
            if kind == "BANK_ACCOUNT" and len(value) == 9 and "rout" in m.group().lower() and not aba_ok(value):
                continue
            yield m.span(1)


_LICENCE_LABEL = re.compile(r"(?i)\b(?:licen[cs]es?|dl|f[üu]hrerschein\w*|permis[ \t]+de[ \t]+conduire|"
                            r"carn[eé]t?[ \t]+de[ \t]+conducir|patente|rijbewijs)\b")
_LICENCE_VALUE = re.compile(r"(?<![\w\-/#£$€])(?:[A-Z][ \t]?)?\d{3}(?:[ \t]\d{3}){2,4}(?![\w\-])"
                            r"|(?<![\w\-/#£$€.,])\d{7,12}(?![\w\-]|[.,]\d)"
                            r"|(?<![\w\-/#£$€])(?![A-Z]{2,}-)(?=(?:[A-Z\-]*\d){5})[A-Z][A-Z0-9\-]{5,18}[0-9]"
                            r"(?![\w\-])", _A)
_PASSPORT_LABEL = re.compile(r"(?i)\b(?:passports?|reisepass|pasaporte|passeport|passaporto|paspoort|paszport)\b")
_PASSPORT_VALUE = re.compile(r"(?<![\w\-/#])(?=(?:[A-Z]*\d){2})[A-Z0-9]{6,9}(?![\w\-/])", _A)
_NOT_DOCUMENT_BEFORE = re.compile(r"(?i)(?:order|ref|reference|ticket|case|invoice|claim|booking|flight|"
                                  r"train|seat|room|policy|no\.?[ \t]*of|#)[ \t:]*\Z")
_SENTENCE_END = re.compile(r"(?i)(?<!\bno)(?<!\bnr)(?<!\bnum)[.!?](?=\s)|\n")


def _passports(text: str) -> Iterator[Span]:
    """Document numbers in the rest of the sentence after "passport": "passport I travel on is M2846137",
    "Passports for booking FAM-2201: 488839667, 22RT48106"."""
    if not _PASSPORT_LABEL.search(text):
        return
    for m in _PASSPORT_LABEL.finditer(text):
        first = _SENTENCE_END.search(text, m.end() + 1)
        end = _SENTENCE_END.search(text, first.end()) if first and text[first.start()] != "\n" else first
        stop = min(m.end() + 120, end.start() if end else len(text))
        for v in _PASSPORT_VALUE.finditer(text, m.end(), stop):
            if not v.group().isalpha() and not _NOT_DOCUMENT_BEFORE.search(text, max(0, v.start() - 14),
                                                                           v.start()):
                yield v.span()


def _dobs(text: str) -> Iterator[Span]:
    return _labelled(text, text.lower(), ("DOB",))


def _bank_accounts(text: str) -> Iterator[Span]:
    yield from _labelled(text, text.lower(), ("BANK_ACCOUNT",))
    if "-" in text:
        for m in _SORT_AND_ACCOUNT.finditer(text):
            yield m.span(1)
            yield m.span(2)


def _licences(text: str) -> Iterator[Span]:
    """Driving licences after their label, and US licence shapes in a text that talks of licences (UK
    licences are found by their own format, `_UK_LICENCE`)."""
    lower = text.lower()
    yield from _labelled(text, lower, ("DRIVING_LICENCE",))
    if "driv" in lower or _LICENCE_LABEL.search(text):
        yield from (m.span() for m in _US_LICENCE_SHAPE.finditer(text))
        for m in _LICENCE_LABEL.finditer(text):
            end = text.find("\n", m.end())
            for v in _LICENCE_VALUE.finditer(text, m.end(), min(m.end() + 80, end if end >= 0 else len(text))):
                if not _NOT_DOCUMENT_BEFORE.search(text, max(0, v.start() - 14), v.start()):
                    yield v.span()
                    break


def _ips(text: str) -> Iterator[Span]:
    if "." in text:
        yield from (m.span() for m in _IPV4.finditer(text))
    if "::" in text or text.count(":") >= 3:
        for m in _IPV6.finditer(text):
            try:
                ipaddress.IPv6Address(m.group().split("%")[0])
            except ValueError:
                continue
            yield m.span()


def _urls(text: str) -> Iterator[Span]:
    """URLs that carry a token, a personal identifier in the query, or a long opaque id in the path."""
    lower = text.lower()
    if "http" not in lower and "www." not in lower:
        return
    for m in _URL.finditer(text):
        url = m.group().rstrip(".,;:!?)]}")
        if _URL_PERSONAL.search(url):
            yield m.start(), m.start() + len(url)


# --- Street addresses and postcodes ----------------------------------------------------------------
_STREET_WORDS = ("street|st|road|rd|avenue|ave|lane|ln|drive|dr|close|way|court|ct|place|pl|crescent|cres|terrace|"
                 "tce|boulevard|blvd|parkway|pkwy|square|sq|hill|gardens|gdns|grove|row|mews|walk|highway|hwy|circle|"
                 "cir|trail|park|rise|green|parade|esplanade|wharf|quay|plaza|alley|broadway|view|vale|hollow|loop|cottages|"
                 "yard|wynd|brae|heights|meadows?|approach|causeway|embankment|cross|block")
_UNIT = r"(?:(?:flat|apt|apartment|unit|suite|ste|floor|room|plot)\.?[ \t]*#?[ \t]*\w{1,5}(?:/\w{1,3})?,?[ \t]+)"
_UNIT_AFTER = r"(?:,?[ \t]+(?:flat|apt|apartment|unit|suite|ste|#)\.?[ \t]*#?[ \t]*\w{1,5}(?![\w\-]))?"
_NAME_WORD = r"(?:[A-Z][A-Za-z'’\-]*\.?|\d{1,3}(?:st|nd|rd|th)|[NSEW]\.?|of|the|de|la|du)"
_BUILDING = (r"(?:(?:[A-Z][\w'’\-]*[ \t]+){1,3}(?:house|court|building|tower|lodge|mansions|apartments|block|hall|"
             r"centre|center|cottage|farm|point|wharf|works|mill|plaza|lofts?),?[ \t]+)")
_ADDRESS = re.compile(
    r"(?<![\w/.\-£$€])(?:" + _UNIT + _BUILDING + r"?(?:\d{1,5}[A-Za-z]?,?[ \t]+)?|"
    r"\d{1,5}[A-Za-z]?(?:[\-–/]\d{1,5}[A-Za-z]?)?,?[ \t]+)"
    r"(?:" + _NAME_WORD + r"[ \t]+){1,4}"
    r"(?:" + _STREET_WORDS + r")\b\.?" + _UNIT_AFTER, re.IGNORECASE)
# Lower-case addresses only with an unambiguous street type ("12 baker street").
_ADDRESS_LOWER = re.compile(
    r"(?<![\w/.\-£$€])\d{1,5}[a-z]?,?[ \t]+(?:[a-z'’\-]+[ \t]+){1,3}(?:street|road|avenue|lane|drive|crescent|terrace|"
    r"boulevard|gardens)\b" + _UNIT_AFTER, re.IGNORECASE)
# "12 rue de la Paix", "Hauptstraße 12", "Calle Mayor 5", "Via Roma 10"; then "bis", "/12", ", int. 4", ", 3º B".
_EU_UNIT = (r"(?:-?bis\b|-?ter\b)?(?:/\d{1,4})?(?:,?[ \t]+(?:int\.?|m\.|app\.?|apt\.?|piso|esc\.?|\d{1,2}[º°ª.])[ \t]*"
            r"\w{0,3}\b\.?(?:[ \t]?(?:[A-Z]|tv|th|mf)\b)?)?")
_ADDRESS_EU = re.compile(
    r"(?<![\w/.\-])\d{1,4}(?:[ \t]?(?:bis|ter))?,?[ \t]+"
    r"(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|rua|via|calle)"
    r"(?:[ \t]+[\w'’\-]+){1,5}(?:,?[ \t]+(?:app\.?|apt\.?|int\.?)[ \t]*\w{1,4})?"
    r"|\b(?:calle|carrer|avenida|via|viale|piazza|rua|rue|avenue|boulevard|place|odos|odós|leoforos)"
    r"(?:[ \t]+[\w'’\-]+){1,4}?,?[ \t]+\d{1,4}[a-z]?\b" + _EU_UNIT +
    r"|\b[A-ZÄÖÜ][\wäöüß\-]*[ \t]+(?:straße|strasse|str\.|allee|weg|platz|gasse|ring|damm|ufer|chaussee)[ \t]+"
    r"\d{1,4}[a-z]?(?:/\d{1,4})?\b"
    r"|(?<![\w\-])\d{1,4}-\d{1,4}-\d{1,4}[ \t]+(?-i:[A-Z][a-z]+)\b"  # Japanese "2-11-3 Meguro"
    r"|\b(?:p\.?[ \t]?o\.?[ \t]+box|postfach|apartado|boîte[ \t]+postale|bp|rr|r\.r\.)[ \t]*\d{1,6}"
    r"(?:[ \t]+box[ \t]+\d{1,5})?\b"  # PO boxes, rural routes
    r"|\b[A-ZÄÖÜÅÆØ][\wäöüåæøé\-]*(?:gatan|gata|gade|vej|veien|vegen|vägen|väg|tie|katu|straat|gracht|laan|"
    r"steeg|plein|kade)[ \t]+\d{1,4}(?:[ \t]?[A-Za-z]\b)?" + _EU_UNIT +  # Nordic and Dutch streets
    r"|\b(?:ul|al|os|pl)\.[ \t]*[A-ZĄĆĘŁŃÓŚŹŻ][\w\-]*(?:[ \t]+[A-ZĄĆĘŁŃÓŚŹŻ][\w\-]*){0,3}[ \t]+"
    r"\d{1,4}[a-z]?(?:/\d{1,4})?\b"
    r"|\b[A-ZÄÖÜ][\wäöüß\-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|gracht|laan|straat)[ \t]+"
    r"\d{1,4}[a-z]?(?:/\d{1,4})?\b", re.IGNORECASE)
_NOT_STREET_NAMES: Final = frozenset({"the", "of", "my", "a", "your", "our", "this", "that", "in", "on", "at", "for",
                                      "and", "to", "from", "by", "with"})


def _addresses(text: str) -> Iterator[Span]:
    for pattern in (_ADDRESS, _ADDRESS_LOWER, _ADDRESS_EU):
        for m in pattern.finditer(text):
            words = m.group().split()
            if pattern is not _ADDRESS_EU and len(words) > 1 and words[1].lower().strip(",") in _NOT_STREET_NAMES:
                continue
            if pattern is _ADDRESS and not any(w[:1].isupper() for w in words[1:]):
                continue  # "2 cards on the way": a street name is capitalised
            yield m.span()


def _postcodes(text: str) -> Iterator[Span]:
    lower = text.lower()
    after = list(_addresses(text)) if any(c.isdigit() for c in text) else []
    yield from (m.span() for m in _UK_POSTCODE_ANY.finditer(text))
    yield from (m.span() for m in _UK_POSTCODE_LOWER.finditer(text))
    yield from (m.span() for m in _EIRCODE.finditer(text))
    yield from (m.span() for m in _CA_POSTCODE.finditer(text))
    yield from (m.span(1) for m in _US_ZIP.finditer(text))
    yield from _labelled(text, lower, ("POSTCODE",))
    for _, end in after:  # EU postcodes right after a street address
        m = _EU_POSTCODE.search(text, end, min(len(text), end + 40))
        if m is not None and not text[end : m.start(1)].strip(" \t,\n").count(" ") > 2:
            yield m.span(1)


# --- Person names: the NER model's PERSON spans, plus context rules ------------------------------------
_W = r"[^\W\d_][\w'’\-]*"  # a word starting with a letter (any script)
_CAPW = r"[A-ZÀ-ÞĀ-Ž][^\W\d_]*(?:['’\-][^\W\d_]+)*"  # a capitalised word of letters ("O'Brien", "Jean-Luc")
_PARTICLES: Final = frozenset({"de", "da", "di", "van", "von", "der", "den", "del", "la", "le", "bin", "binti", "al",
                               "el", "ben", "dos", "du", "ter", "ibn", "mac"})
_NOT_NAMES: Final = frozenset({
    "a", "account", "accounts", "admin", "advance", "afternoon", "again", "all", "also", "am", "amex", "an", "and",
    "bank", "best", "billing", "bitte", "bonjour", "both", "but", "can", "card", "care", "cheers", "claims",
    "cordialement", "could", "customer", "customers", "damen", "danke", "dear", "dear,", "department", "dept", "desk",
    "dr", "driver", "e-mail", "email", "evening", "everyone", "faithfully", "finance", "folks", "fraud", "friend",
    "friends", "from", "fwd", "gift", "gracias", "greetings", "grüsse", "grüße", "guys", "hallo", "has", "have",
    "hello", "help", "helpdesk", "here", "herren", "hey", "hi", "hiya", "hola", "hr", "i", "i'd", "i'll", "i'm",
    "i've", "in", "is", "just", "kind", "kundennummer", "login", "madam", "madame", "maestro", "manager",
    "mastercard", "mate", "mein", "merci", "mfg", "miss", "morning", "mr", "mrs", "ms", "much", "mx", "my", "name",
    "no", "not", "now", "office", "ok", "okay", "operations", "or", "password", "paypal", "pin", "please", "prof",
    "professor", "question", "re", "reception", "regards", "regards,", "sales", "saludos", "sent", "service",
    "services", "sincerely", "sir", "so", "sorry", "still", "support", "team", "thank", "thanks", "thankyou", "the",
    "there", "ticket", "today", "tomorrow", "truly", "urgent", "visa", "was", "will", "world", "would", "yes", "you",
    "your", "yours"
})
# Capitalised words that start sentences and never start a name: a text whose capitalised words are all
# here (or in _NOT_NAMES) skips the NER model, which finds names by their capital letters. Most tickets
# are such questions ("How do I ...? Can I ...?"), so this saves the model pass on most of a queue.
_NEVER_NAME_CAPS: Final = _NOT_NAMES | frozenset({
    "about", "after", "any", "anyone", "are", "as", "at", "because", "been", "before", "call", "did", "do", "does",
    "don't", "each", "even", "every", "few", "for", "fri", "friday", "good", "got", "great", "had", "hasn't",
    "haven't", "hope", "how", "i'd", "i'll", "i'm", "i've", "if", "isn't", "it", "it's", "last", "let", "many", "may",
    "maybe", "me", "mon", "monday", "more", "most", "need", "nothing", "of", "on", "once", "one", "only", "other",
    "our", "over", "really", "sat", "saturday", "should", "since", "some", "somebody", "someone", "something", "sun",
    "sunday", "sure", "that", "that's", "their", "them", "then", "there's", "these", "they", "this", "those", "thu",
    "thur", "thurs", "thursday", "to", "tue", "tues", "tuesday", "two", "unfortunately", "up", "wait", "we", "we're",
    "wed", "wednesday", "were", "what", "what's", "when", "whenever", "where", "which", "while", "who", "why", "with",
    "yesterday", "yet", "you're"
})
_WORD = re.compile(r"[^\W\d_][\w'’-]*")


def may_hold_name(text: str) -> bool:
    """Whether the NER model could find a name here: some capitalised word ("Maria", "Élodie") not in
    _NEVER_NAME_CAPS, or none at all (a writer who types all in lower case: "hi, this is john smith")."""
    caps = [w.lower() for w in _WORD.findall(text) if w[0].isupper() and w[1:2].islower()]
    return not caps or any(w not in _NEVER_NAME_CAPS for w in caps)


_GREETING = re.compile(r"(?im)(?:^|(?<=[.!?]\s))[ \t>]*(?:hi|hello|hey|dear|good[ \t]+(?:morning|afternoon|evening))"
                       r"[ \t,]+(" + _W + r"(?:[ \t]+" + _W + r"){0,2})[ \t]*(?=[,!:\n]|$)")
_SIGNOFF = re.compile(
    r"(?i)\b(?:thanks(?:[ \t]+(?:again|so[ \t]+much|a[ \t]+lot|in[ \t]+advance))?|thank[ \t]+you|many[ \t]+thanks|thx|"
    r"(?:kind|best|warm|warmest)[ \t]+(?:regards|wishes)|regards|best|cheers|sincerely|yours(?:[ \t]+(?:sincerely|"
    r"faithfully|truly))?|respectfully|ta)\b[ \t]*[,.!\-–—]*[ \t]*(\n[ \t]*)?(" + _W + r"(?:[ \t]+" + _W + r"){0,3})"
    r"[ \t]*(?=[,.\n]|$)")
_SAID_NAME = re.compile(r"(?i)\b(my[ \t]+name[ \t]+is|my[ \t]+name's|name[ \t]*:|i[ \t]+am|i'm|this[ \t]+is|"
                        r"t\.n\.v\.|a/n|account[ \t]+name|payable[ \t]+to|beneficiary|attn:?|attention:?|c/o|"
                        r"cardholder|contact|customer|caller|name|name[ \t]+on[ \t]+(?:the[ \t]+)?(?:account|card)|"
                        r"(?:account|card)[ \t]*holder|signed[ \t]+for[ \t]+by|nombre:?|nom:?|b[ée]n[ée]ficiaire|"
                        r"intestat[oa][ \t]+a|begünstigter|empfänger|kontoinhaber(?:in)?|"
                        r"it['’]?s[ \t]+me|it's|"
                        r"signed|from[ \t]*:|spoke[ \t]+(?:to|with)|talked[ \t]+to|speaking[ \t]+to|agent|advisor|"
                        r"adviser|colleague|(?:mr|mrs|ms|miss|mx|dr|prof)\.?)[ \t]+(" + _W + r"(?:[ \t]+" + _W +
                        r"){0,3})")
_BEFORE_EMAIL = re.compile(r"(" + _W + r"(?:[ \t]+" + _W + r"){0,3})[ \t]*[<(\[][^\s<>()@]+@")
_LOWER_OK: Final = ("my name", "name:", "name :", "signed", "it's me", "its me", "it’s me")
_RELATIVE = re.compile(
    r"(?i)\b(?:my|our|her|his|their)[ \t]+(?:son|daughter|husband|wife|partner|mother|mum|mom|father|dad|brother|"
    r"sister|friend|colleague|boss|landlord|landlady|tenant|child|grandson|granddaughter|grandmother|grandfather|"
    r"gran|nan|uncle|aunt|cousin|niece|nephew|fianc[ée]e?|flatmate|roommate|carer|assistant|neighbou?r|"
    r"accountant|lawyer|solicitor)[ \t,]+(" + _W + r"(?:[ \t]+" + _W + r"){0,2})")
_POSSESSIVE = re.compile(
    r"\b([A-Z][\w\-]*)['’]s[ \t]+(?:passport|account|card|booking|phone|number|e-?mail|address|husband|wife|son|"
    r"daughter|mother|father|mum|mom|dad|details|name|licen[cs]e|birthday|date[ \t]+of[ \t]+birth)\b")
_HERE = re.compile(r"\A[ \t]*(" + _W + r"(?:[ \t]+" + _CAPW + r"){0,2})[ \t]+(?i:here)\b")  # "anne-sophie here"
# "this is ahmed from flat 3", "I'm Ming from IT" (lower case only after "this is")
_THIS_IS_FROM = re.compile(r"(?i:\b(this[ \t]+is|it'?s|i[ \t]+am|i'm))[ \t]+([^\W\d_][\w'’\-]*)"
                           r"(?=[ \t]+(?i:from|here|speaking|calling)\b)")
_DASH_SIGNATURE = re.compile(r"[ \t][-–—][ \t]*(" + _CAPW + r"(?:[ \t]+" + _CAPW + r"){0,3})[ \t]*\Z")
# "... is attached. Rahul", "... /Tove Lindqvist"
_FINAL_NAME = re.compile(r"(?:[.!?]|\A|\s/)[ \t]*(" + _CAPW + r"(?:[ \t]+" + _CAPW + r"){0,3})[ \t]*\Z")
_LOWER_GREETING = re.compile(r"(?im)(?:^|(?<=[.!?]\s))[ \t>]*(?:hi|hello|hey|dear)[ \t]+([a-z][\w'’\-]*)[ \t]*[,!]")
_LOWER_SIGNOFF = re.compile(r"(?i)\b(?:thanks|thank[ \t]+you|cheers|regards|ta|thx)[ \t,]+([a-z][\w'’\-]*)[ \t.!]*\Z")
# A line that starts with a name and then contact details or a payment: "Nkechi Uzo | +234 ...",
# "Aino Virtanen - FI2112345600000785"; and chat speakers, whose "Name:" label repeats.
_LINE_LEAD = re.compile(r"(?m)^[ \t>]*(" + _CAPW + r"(?:[ \t]+" + _CAPW + r"){0,2})[ \t]*(\||[-–—](?=[ \t])|:(?=[ \t]))"
                        r"([^\n]*)")
_LAST_LINE = re.compile(r"\n[ \t]*(" + _CAPW + r"(?:[ \t]+" + _CAPW + r"){0,2})[ \t]*\s*\Z")
_NOT_LEADS: Final = frozenset({"tel", "phone", "mobile", "email", "e-mail", "fax", "ref", "order", "account", "iban",
                               "card", "invoice", "total", "amount", "batch", "date", "time", "subject", "to", "cc",
                               "note", "chat", "status", "reason", "summary", "update", "issue", "priority",
                               "address", "name", "company", "product", "plan", "case", "ticket", "agent", "bot",
                               "system", "step", "option", "error", "warning", "item", "qty", "price", "sku"})


def _name_words(words: list[str], lowercase_ok: bool) -> int:
    """How many of the leading `words` form a name (0 if none): capitalised words and particles."""
    n = 0
    for w in words:
        bare = w.strip("'’-")
        if not bare or bare.lower() in _NOT_NAMES and n == 0:
            break
        if bare[0].isupper() or (n > 0 and bare.lower() in _PARTICLES) or (lowercase_ok and bare.isalpha()
                                                                            and bare.lower() not in _NOT_NAMES):
            n += 1
        else:
            break
    while n > 0 and words[n - 1].strip("'’-").lower() in _PARTICLES:
        n -= 1
    return n


def _name_span(text: str, start: int, value: str, lowercase_ok: bool) -> Span | None:
    words = value.split()
    n = _name_words(words, lowercase_ok)
    if n == 0:
        return None
    end = start
    for i, w in enumerate(words[:n]):
        end = text.index(w, end) + len(w)
        if i == 0:
            start = end - len(w)
    while end > start and text[end - 1] in "'’-":
        end -= 1
    if text[end - 2 : end] in ("'s", "’s"):
        end -= 2
    return (start, end) if end - start >= 2 else None


def _names_by_context(text: str) -> Iterator[Span]:
    for m in _GREETING.finditer(text):
        if (span := _name_span(text, m.start(1), m.group(1), lowercase_ok=False)) is not None:
            yield span
    for m in _SIGNOFF.finditer(text):
        own_line = m.group(1) is not None and text[m.end(2) : m.end(2) + 1] in ("", "\n")
        if (span := _name_span(text, m.start(2), m.group(2), lowercase_ok=own_line)) is not None:
            yield span
    for m in _SAID_NAME.finditer(text):
        label = m.group(1).lower()
        lowercase_ok = any(label.startswith(k) for k in _LOWER_OK)
        value = " ".join(m.group(2).split()[:2]) if lowercase_ok and m.group(2).islower() else m.group(2)
        if (span := _name_span(text, m.start(2), value, lowercase_ok)) is not None:
            yield span
    for m in _RELATIVE.finditer(text):
        if (span := _name_span(text, m.start(1), m.group(1), lowercase_ok=False)) is not None:
            yield span
    if "'" in text or "’" in text:
        for m in _POSSESSIVE.finditer(text):
            if m.group(1).lower() not in _NEVER_NAME_CAPS:
                yield m.span(1)
    for m in _THIS_IS_FROM.finditer(text):
        name = m.group(2)
        if (name[0].isupper() or m.group(1).lower().startswith("this")) and not name.endswith("ing") \
                and name.lower() not in _NEVER_NAME_CAPS | _NOT_LEADS:
            yield m.span(2)
    for pattern in (_LOWER_GREETING, _LOWER_SIGNOFF, _DASH_SIGNATURE, _FINAL_NAME):
        for m in pattern.finditer(text):
            if m.group(1).split()[0].lower() not in _NEVER_NAME_CAPS | _NOT_LEADS:
                yield m.span(1)
    here = _HERE.match(text)
    if here is not None and here.group(1).lower() not in _NEVER_NAME_CAPS:
        yield here.span(1)
    leads = [m for m in _LINE_LEAD.finditer(text) if m.group(1).split()[0].lower() not in _NEVER_NAME_CAPS | _NOT_LEADS]
    speakers = Counter(m.group(1) for m in leads if m.group(2) == ":")
    for m in leads:
        if speakers[m.group(1)] >= 2 or (m.group(2) != ":" and any(c.isdigit() or c == "@" for c in m.group(3))):
            yield m.span(1)
    last = _LAST_LINE.search(text)
    if last is not None and last.group(1).split()[0].lower() not in _NEVER_NAME_CAPS | _NOT_LEADS:
        yield last.span(1)
    if "@" in text:
        for m in _BEFORE_EMAIL.finditer(text):  # "Sarah Lee <sarah.lee@...>": capitalised words before the address
            parts = list(re.finditer(r"\S+", m.group(1)))
            first = len(parts)
            while first > 0 and parts[first - 1].group()[0].isupper() \
                    and parts[first - 1].group().lower() not in _NOT_NAMES:
                first -= 1
            if first < len(parts):
                yield m.start(1) + parts[first].start(), m.start(1) + parts[-1].end()
    yield from _block_heads(text)


_BLOCK_HEAD = re.compile(r"(?:\A|\n[ \t]*\n)[ \t]*(" + _CAPW + r"(?:[ \t]+" + _CAPW + r"){0,3})[ \t]*\n"
                         r"([^\n]*(?:\n(?![ \t]*\n)[^\n]*){0,3})")


_HEADINGS: Final = frozenset({"form", "details", "summary", "receipt", "request", "report", "statement",
                              "application", "confirmation", "notice", "booking", "information", "info", "log",
                              "transcript", "customer", "agent", "support", "team", "care", "service", "services"})


def _block_heads(text: str) -> Iterator[Span]:
    """A name heading a contact block ("Matthias Weber\nLindenstraße 17\n50674 Köln") or a short last
    block ("Declan\nCustomer Care"): the first line of a paragraph, when the lines under it hold digits or
    an address, or the paragraph ends the text in at most three lines."""
    if "\n" not in text:
        return
    for m in _BLOCK_HEAD.finditer(text):
        words = [w.lower() for w in m.group(1).split()]
        if words[0] in _NEVER_NAME_CAPS or any(w in _NOT_LEADS or w in _HEADINGS for w in words) \
                or words[-1] in _PRODUCT_WORDS:
            continue
        rest = m.group(2)
        if any(c.isdigit() or c == "@" for c in rest) or not text[m.end() :].strip():
            yield m.span(1)


# What the model reads as a person but the words around say is a place, a product or a company:
# "in Norwich", "My bank is Santander", "browser Chrome", "Insights Pro", "Roaming Add-on".
_PLACE_OR_THING_BEFORE = re.compile(r"(?i)\b(?:in|at|near|is|browser|using|via|with[ \t]+the|the|app)[ \t]+\Z")
_PRODUCT_WORDS: Final = frozenset({"pro", "plus", "premium", "max", "lite", "mini", "ultra", "app", "edition",
                                   "basic", "business", "enterprise", "add", "add-on", "addon", "suite", "city",
                                   "town", "village", "county", "district", "house", "park", "centre", "center",
                                   "hotel", "airport", "station", "bank", "group", "ltd", "limited", "inc", "llc",
                                   "gmbh", "plc", "operative", "assistant", "officer", "manager", "ruble",
                                   "rouble", "dollar", "dollars", "euro", "euros", "pound", "pounds", "yen",
                                   "franc", "francs", "peso", "pesos", "rupee", "rupees", "krona", "krone",
                                   "zloty", "lira", "landlord", "landlady", "atm"})


def _clean_person(text: str, span: Span) -> Span | None:
    """An NER span without trailing punctuation or possessive; None for things that are not names."""
    s, e = span
    if " " not in text[s:e].strip() and _PLACE_OR_THING_BEFORE.search(text, max(0, s - 12), s):
        return None
    while e > s and not text[e - 1].isalnum():
        e -= 1
    if (cut := re.search(r"[ \t]+[-–—|][ \t]+|\n", text[s:e])) is not None:  # "Piotr Nowak - UK": the name only
        e = s + cut.start()
    words = text[s:e].split()
    if not words or any(w.isupper() and 2 <= len(w) <= 3 for w in words) or words[-1].lower() in _NOT_NAMES \
            or (not text[s:e].islower() and any(w.islower() and w not in _PARTICLES for w in words)) \
            or (text[s:e].islower() and (len(words) < 2 or any(len(w) < 3 for w in words))):
        return None  # "IP", "Login IP", "FibreLink Support", "mein Konto", "reçu la"
    if e <= s or text[e : e + 1] == "-" and text[e + 1 : e + 2].islower() \
            or text[s:e].split()[-1].lower() in _PRODUCT_WORDS:  # a word cut in two ("Add-on"), a product
        return None
    if text[e - 2 : e] in ("'s", "’s"):
        e -= 2
    while (m := re.match(r"(\w+)\W+", text[s:e])) and m.group(1).lower() in _NOT_NAMES:  # "Cheers Priya"
        s += m.end()
    value = text[s:e]
    if e - s < 2 or any(c.isdigit() for c in value) or _PLACEHOLDER.search(value) or "@" in value:
        return None
    if value.lower() in _NOT_NAMES or (value.islower() and " " not in value):  # the model reads typos as names
        return None
    return s, e


def _clean_context_name(text: str, span: Span) -> Span | None:
    """A span from the context rules, unless it names a team, a product or a place ("FibreLink Support")."""
    value = text[span[0] : span[1]]
    words = value.lower().split()
    if not words or words[-1] in _NOT_NAMES or words[-1] in _PRODUCT_WORDS or words[0] in _NEVER_NAME_CAPS \
            or any(c.isdigit() for c in value):
        return None
    return span


_SENTENCE_START = re.compile(r"(?:\A|[.!?:;]\s+|\n)[ \t>*\-•\"“(]*\Z")


def _lone_opening_word(text: str, s: int, e: int) -> bool:
    """A single word that the model calls a name where any capitalised word stands: at the start of a
    sentence or line ("Voicemail from...", "Payroll said", "Reisepass..."). Names there come from the
    context rules instead (greetings, sign-offs, "Maria here")."""
    return " " not in text[s:e] and bool(_SENTENCE_START.search(text, max(0, s - 8), s))


def _a_town(text: str, s: int, e: int, places: list[tuple[int, int, str]]) -> bool:
    """Whether a span the model read as a name is the town of an address: right after a street address
    or right before a postcode ("16 Church Road, Limerick", "Glasgow G12 8QQ", "1070 Wien")."""
    for a, b, kind in places:
        if b <= s and not text[b:s].strip(" \t,\n") and (kind == "ADDRESS" or kind == "POSTCODE"):
            return True
        if e <= a and not text[e:a].strip(" \t,\n") and kind == "POSTCODE":
            return True
    return False


# Detectors in priority order (where spans overlap, the earlier one wins), each with what a text must
# hold for it to find anything (ASCII digits, a whitespace-free word of some length), so that most
# tickets skip most detectors.
_DETECTORS: Final[tuple[tuple[str, Callable[[str], Iterator[Span]], int, int], ...]] = (
    ("URL", _urls, 0, 10),
    ("SECRET", _secrets_known, 0, 15),
    ("SECRET", _secrets_kv, 0, 0),
    ("SECRET", _secrets_labelled, 0, 0),
    ("EMAIL", _emails, 0, 0),
    ("IBAN", _ibans, 6, 0),
    ("SSN", _ssns, 9, 0),
    ("NINO", _ninos, 6, 0),
    ("CARD", _cards, 13, 0),
    ("DRIVING_LICENCE", lambda t: (m.span() for m in _UK_LICENCE.finditer(t)), 7, 16),
    ("PASSPORT", _passports, 2, 0),
    ("DRIVING_LICENCE", _licences, 4, 0),
    ("BANK_ACCOUNT", _bank_accounts, 6, 0),
    ("DOB", _dobs, 2, 0),
    ("IP", _ips, 2, 0),
    ("PHONE", _phones, 8, 0),
    ("ADDRESS", _addresses, 1, 0),
    ("POSTCODE", _postcodes, 1, 0),
    ("PERSON", _names_by_context, 0, 0),
    ("SECRET", _secrets_generic, 0, 24),
)
# Kinds whose spans are cut around values already taken instead of being dropped when they overlap one:
# a name the model read as "Sarah Lee <sarah" keeps "Sarah Lee".
_CLIPPED: Final = frozenset({"PERSON"})


def _free_parts(span: Span, taken: list[Span]) -> list[Span]:
    parts = [span]
    for a, b in taken:
        parts = [p for s, e in parts for p in ((s, min(e, a)), (max(s, b), e)) if p[0] < p[1]] \
            if any(s < b and a < e for s, e in parts) else parts
    return parts


def _find(text: str, names: list[Span] | None) -> list[PIIMatch]:
    """`names`: the model's PERSON spans, or None to skip person names altogether."""
    digits = sum(map(text.count, "0123456789"))
    longest_word = max(map(len, text.split()), default=0)
    taken: list[Span] = []
    found: list[PIIMatch] = []

    def take(kind: str, s: int, e: int) -> None:
        for a, b in _free_parts((s, e), taken) if kind in _CLIPPED else [(s, e)]:
            if kind in _CLIPPED:
                while a < b and not text[a].isalnum():
                    a += 1
                while b > a and not text[b - 1].isalnum():
                    b -= 1
                if b - a < 2:
                    continue
            if a < b and all(b <= x or a >= y for x, y in taken):
                taken.append((a, b))
                found.append(PIIMatch(kind, a, b, text[a:b]))

    for kind, detect, min_digits, min_word in _DETECTORS:
        if digits < min_digits or longest_word < min_word:
            continue
        if kind == "PERSON":
            if names is None:
                continue
            places = [(f.start, f.end, f.type) for f in found if f.type in ("ADDRESS", "POSTCODE")]
            for span in names:
                if (clean := _clean_person(text, span)) is not None and not _a_town(text, *clean, places) \
                        and not _lone_opening_word(text, *clean):
                    take(kind, *clean)
            for span in detect(text):
                if (clean := _clean_context_name(text, span)) is not None:
                    take(kind, *clean)
            # A name found once is masked wherever else it occurs, in any case ("Agent (Kofi)" ... "hi kofi").
            for value in {f.value for f in found if f.type == "PERSON"}:
                for m in re.finditer(r"(?<![\w'’\-])" + re.escape(value) + r"(?![\w'’\-])", text, re.IGNORECASE):
                    take(kind, *m.span())
            continue
        for s, e in detect(text):
            take(kind, s, e)
    found.sort(key=lambda f: f.start)
    return found


def find_pii_many(texts: Sequence[str], *, names: bool = True) -> list[list[PIIMatch]]:
    """All PII in each text, without overlaps, in order of appearance; one NER pass for the batch.

    `names=False` skips person names (no model): the structured and context kinds only.
    """
    if not names:
        return [_find(text, None) for text in texts]
    ask = [i for i, text in enumerate(texts) if may_hold_name(text)]
    spans: list[list[Span]] = [[] for _ in texts]
    for i, found in zip(ask, pii_ner.person_spans([texts[i] for i in ask]) if ask else [], strict=True):
        spans[i] = found
    return [_find(text, s) for text, s in zip(texts, spans, strict=True)]


def find_pii(text: str, *, names: bool = True) -> list[PIIMatch]:
    """All PII in `text`, without overlaps, in order of appearance."""
    return find_pii_many([text], names=names)[0]


def _masked(text: str, found: list[PIIMatch]) -> MaskResult:
    if not found:
        return MaskResult(text=text)
    counts: dict[str, int] = {}
    numbers: dict[str, int] = {}
    by_value: dict[tuple[str, str], str] = {}
    mapping: dict[str, str] = {}
    parts: list[str] = []
    pos = 0
    for f in found:
        counts[f.type] = counts.get(f.type, 0) + 1
        placeholder = by_value.get((f.type, f.value))
        if placeholder is None:
            while True:  # skip a number whose placeholder already occurs in the input, so restore is exact
                numbers[f.type] = numbers.get(f.type, 0) + 1
                placeholder = f"<{f.type}_{numbers[f.type]}>"
                if placeholder not in text:
                    break
            by_value[(f.type, f.value)] = placeholder
            mapping[placeholder] = f.value
        parts.append(text[pos : f.start])
        parts.append(placeholder)
        pos = f.end
    parts.append(text[pos:])
    return MaskResult(text="".join(parts), counts=counts, mapping=mapping, found=found)


def mask_many(texts: Sequence[str], *, names: bool = True) -> list[MaskResult]:
    """`mask` for a batch of texts (one NER pass): what the stream worker calls per micro-batch."""
    return [_masked(t, f) for t, f in zip(texts, find_pii_many(texts, names=names), strict=True)]


def mask(text: str) -> MaskResult:
    """Replace each PII value with a typed, numbered placeholder; equal values share one placeholder."""
    return mask_many([text])[0]


def restore(text: str, mapping: dict[str, str]) -> str:
    """Put the original values back for the placeholders in `mapping`; other text is left as it is."""
    if not mapping:
        return text
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)


def safe_mask_many(texts: Sequence[str], *, names: bool = True) -> list[MaskResult | None]:
    """`mask_many`, failing closed: None for every text (and an error log without the texts) if it raised.

    A caller that gets None must not send the text anywhere and routes the ticket to `human_queue`.
    """
    try:
        return list(mask_many(texts, names=names))
    except Exception:
        logger.exception("PII masking failed on a batch of %d texts (%d characters); nothing may be sent",
                         len(texts), sum(map(len, texts)))
        return [None] * len(texts)


def safe_mask(text: str) -> MaskResult | None:
    """`safe_mask_many` for one text."""
    return safe_mask_many([text])[0]


def contains_pii(text: str, *, names: bool = True) -> bool:
    """True when `text` holds at least one value that `mask` would replace (`names`: as in `find_pii_many`)."""
    return bool(find_pii(text, names=names))
