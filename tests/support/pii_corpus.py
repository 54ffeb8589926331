"""A PII corpus with planted values and decoys, and its scorer: recall and precision per type.

Used by `bench/bench_pii.py` (2,000 tickets, `make bench-pii`) and by `tests/triage/test_pii.py` (a small corpus).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from apps.simulator import TicketGenerator, iban_complete, luhn_complete
from triage.pii import IBAN_LENGTHS, find_pii_many, mask_many, restore

# The kinds this generator plants: the structured ones. Names, addresses and the other kinds are
# measured on the hand-labelled corpus in tests/data/pii/ (see bench/bench_pii.py).
PII_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "NINO", "SECRET")

RECALL_MIN = 0.99
PRECISION_MIN = 0.95

B62 = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Planted:
    type: str
    start: int
    end: int
    value: str


@dataclass
class CorpusTicket:
    text: str
    planted: list[Planted] = field(default_factory=list)
    decoys: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, start, end)


class Values:
    """PII values in varied formats, and decoys that look like PII but are not."""

    def __init__(self, rng: random.Random) -> None:
        self.r = rng

    def digits(self, n: int, first: str = string.digits) -> str:
        return self.r.choice(first) + "".join(self.r.choices(string.digits, k=n - 1))

    def email(self) -> str:
        r = self.r
        first = r.choice(["anna", "li", "marek", "sofia", "o.brien", "jean-luc", "kim", "ali", "zoe"])
        last = r.choice(["smith", "nowak", "garcia", "chen", "muller", "okafor", "rossi", "dubois"])
        local = r.choice([f"{first}.{last}", f"{first}_{last}", f"{first}{last}{r.randint(1, 999)}",
                          f"{first}+{r.choice(['shop', 'bank', 'x'])}", f"{first[0]}.{last}{r.randint(1, 99)}"])
        domain = r.choice(["gmail.com", "example.org", "mail.co.uk", "support.acme-corp.io", "uni-bonn.de",
                           "outlook.fr", "proton.me", "sub.domain.example.com"])
        value = f"{local}@{domain}"
        return value.upper() if r.random() < 0.1 else value

    def phone(self) -> str:
        r, d = self.r, self.digits
        uk, de = d(9), d(8)
        fr = [f"{r.randint(0, 99):02d}" for _ in range(4)]
        area, exch = d(3, "23456789"), d(3, "23456789")
        return r.choice([
            f"+44 7{uk[:3]} {uk[3:]}", f"+44 (0)7{uk[:3]} {uk[3:]}", f"+447{uk}", f"07{uk[:3]} {uk[3:]}",
            f"07{uk[:3]} {uk[3:6]} {uk[6:]}", f"07{uk}", f"020 {d(4)} {d(4)}", f"+44 20 {d(4)} {d(4)}",
            f"+49 151 {de}", f"0151 {de}", f"0151-{de[:4]}-{de[4:]}", f"030/{d(7)}", f"+49 30 {d(7)}",
            f"06 {' '.join(fr)}", f"06.{'.'.join(fr)}", f"+33 6 {' '.join(fr)}", f"+33 6{''.join(fr)}",
            f"({area}) {exch}-{d(4)}", f"({area}) {exch} {d(4)}", f"{area}-{exch}-{d(4)}",
            f"{area}.{exch}.{d(4)}", f"+1 {area} {exch} {d(4)}", f"+1-{area}-{exch}-{d(4)}",
            f"+1 ({area}) {exch}-{d(4)}", f"1-800-{exch}-{d(4)}", f"+353 87 {d(3)} {d(4)}",
            f"06-{d(8)}", f"+31 6 {d(8)}", f"+61 4{d(2)} {d(3)} {d(3)}", f"0044 7{uk[:3]} {uk[3:]}",
            f"001 {area} {exch} {d(4)}", f"(+44) 7{uk[:3]} {uk[3:]}", f"+44 7{uk[:3]}-{uk[3:6]}-{uk[6:]}",
            f"{area} {exch} {d(4)}", f"({area}){exch}-{d(4)}", f"+91 9{d(4)} {d(5)}", f"+49 (151) {de[:4]} {de[4:]}",
        ])

    def card(self) -> str:
        r = self.r
        prefix, length, groups = r.choice([
            ("4", 16, (4, 4, 4, 4)), ("4", 13, (4, 4, 5)), ("51", 16, (4, 4, 4, 4)), ("55", 16, (4, 4, 4, 4)),
            ("2221", 16, (4, 4, 4, 4)), ("2720", 16, (4, 4, 4, 4)), ("34", 15, (4, 6, 5)),
            ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("36", 14, (4, 6, 4)), ("35", 16, (4, 4, 4, 4)),
            ("62", 19, (4, 4, 4, 4, 3)),
        ])
        number = luhn_complete(prefix + self.digits(length - len(prefix) - 1))
        sep = r.choice([" ", " ", "-", "", "."]) if groups[:3] == (4, 4, 4) else r.choice([" ", "-", ""])
        return self._group(number, groups, sep)

    def _group(self, number: str, groups: tuple[int, ...], sep: str) -> str:
        parts, i = [], 0
        for g in groups:
            parts.append(number[i : i + g])
            i += g
        return sep.join(parts)

    def _bban(self, country: str) -> str:
        length = IBAN_LENGTHS[country] - 4
        if country in ("GB", "NL", "IE", "BG", "RO"):
            letters = 4
        elif country in ("MT", "GI", "CY"):
            letters = 0 if country == "CY" else 4
        else:
            letters = 0
        return "".join(self.r.choices(string.ascii_uppercase, k=letters)) + self.digits(length - letters)

    def iban(self) -> str:
        r = self.r
        country = r.choice(["DE", "GB", "FR", "NL", "ES", "IT", "BE", "AT", "CH", "IE", "PL", "PT", "SE",
                            "NO", "DK", "FI", "LU", "RO", "BG", "MT"])
        iban = iban_complete(country, self._bban(country))
        if r.random() < 0.1:
            return f"{iban[:2]} {iban[2:4]} {iban[4:]}"  # "DE 89 3704...": upper case only
        if r.random() < 0.5:
            iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
        return iban.lower() if r.random() < 0.2 else iban

    def ssn(self) -> str:
        r = self.r
        while True:
            area = r.randint(1, 899)
            if area != 666:
                break
        v = f"{area:03d}", f"{r.randint(1, 99):02d}", f"{r.randint(1, 9999):04d}"
        return r.choice(["-", "-", " "]).join(v)

    def nino(self) -> str:
        r = self.r
        while True:
            prefix = r.choice("ABCEGHJKLMNOPRSTWXYZ") + r.choice("ABCEGHJKLMNPRSTWXYZ")
            if prefix not in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
                break
        d = self.digits(6)
        value = r.choice([f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {{s}}", f"{prefix}{d}{{s}}", f"{prefix} {d} {{s}}"])
        value = value.format(s=r.choice("ABCD"))
        return value.lower() if r.random() < 0.15 else value

    def secret(self) -> str:
        r = self.r

        def rnd(n: int, alphabet: str = B62) -> str:
            return "".join(r.choices(alphabet, k=n))

        return r.choice([
            lambda: "sk-" + rnd(48), lambda: "sk-proj-" + rnd(40, B62 + "_-"), lambda: "sk_live_" + rnd(24),
            lambda: "AKIA" + rnd(16, string.ascii_uppercase + "234567"), lambda: "ghp_" + rnd(36),
            lambda: "github_pat_" + rnd(22) + "_" + rnd(59), lambda: f"xoxb-{self.digits(12)}-{rnd(24)}",
            lambda: "AIza" + rnd(35, B62 + "_-"), lambda: "glpat-" + rnd(20, B62 + "_-"),
            lambda: f"eyJ{rnd(20)}.eyJ{rnd(40)}.{rnd(43, B62 + '_-')}",
            lambda: rnd(40, B62 + "+/"), lambda: rnd(32, "0123456789abcdef"), lambda: rnd(64, "0123456789abcdef"),
        ])()

    def kv_secret(self) -> tuple[str, str]:
        """A `key=value` style secret: (sentence template with {v}, value)."""
        r = self.r
        value = r.choice([
            "".join(r.choices(B62, k=r.randint(12, 32))),
            r.choice(["Summer", "Winter", "Hunter", "Dragon"]) + str(r.randint(10, 9999)) + r.choice("!#$%"),
            "".join(r.choices("0123456789abcdef", k=20)),
        ])
        template = r.choice(["api_key={v}", "API_KEY: {v}", "my password is: {v}", "password={v}",
                             "token = {v}", "client_secret: '{v}'", '"apiKey": "{v}"', "X-Api-Key: {v}"])
        return template, value

    def decoy(self) -> tuple[str, str]:
        """(kind, text) of something that must not be masked."""
        r, d = self.r, self.digits
        kind = r.choice(["amount", "date", "order", "ticket", "bad_luhn", "bad_iban", "bad_ssn", "bad_nino",
                         "ip_version", "uuid", "prose", "code"])
        if kind == "amount":
            text = r.choice([f"{r.randint(5, 9999)}.{r.randint(0, 99):02d} EUR", f"€{r.randint(1, 99)},{d(3)}.50",
                             f"$ {r.randint(1, 999)}.99", f"GBP {r.randint(1, 99)},{d(3)}",
                             f"+{r.randint(10, 2500)}.00 EUR", f"{r.randint(1, 99)}.5%"])
        elif kind == "date":
            y, m, dd = r.randint(2019, 2027), r.randint(1, 12), r.randint(1, 28)
            text = r.choice([f"{y}-{m:02d}-{dd:02d}", f"{dd:02d}.{m:02d}.{y}", f"{m:02d}/{dd:02d}/{y}",
                             f"{dd} Nov {y}", f"{dd:02d}.{m:02d}.{y} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
                             f"{y}-{m:02d}-{dd:02d}T10:30:00Z", f"{dd:02d}/{m:02d}/{y % 100:02d}"])
        elif kind == "order":
            text = r.choice([f"order #{d(r.randint(6, 12), '123456789')}", f"ORD-{r.randint(2019, 2027)}-{d(6)}",
                             f"invoice INV-{d(5)}", f"order number {d(r.randint(6, 12), '123456789')}",
                             f"tracking 1Z{rnd_upper(r, 3)}{d(11)}"])
        elif kind == "ticket":
            text = r.choice([f"T-{r.getrandbits(24):06x}", f"T-{r.getrandbits(64):016x}",
                             f"C-{r.randint(10000, 99999)}"])
        elif kind == "bad_luhn":
            good = luhn_complete("4" + d(14))
            bad = good[:-1] + str((int(good[-1]) + r.randint(1, 9)) % 10)
            text = self._group(bad, (4, 4, 4, 4), r.choice([" ", "-", ""]))
        elif kind == "bad_iban":
            good = iban_complete("DE", d(18)).replace(" ", "")
            check = (int(good[2:4]) + r.randint(1, 90)) % 97 + 2
            bad = f"{good[:2]}{check:02d}{good[4:]}"
            bad = bad if bad != good else bad[:-1] + str((int(bad[-1]) + 1) % 10)
            text = " ".join(bad[i : i + 4] for i in range(0, len(bad), 4)) if r.random() < 0.5 else bad
        elif kind == "bad_ssn":
            text = r.choice([f"000-{d(2, '123456789')}-{d(4, '123456789')}", f"666-12-{d(4, '123456789')}",
                             f"9{d(2)}-{d(2, '123456789')}-{d(4, '123456789')}", f"{d(3, '12345678')}-00-{d(4, '1')}",
                             f"{d(3, '12345678')}-{d(2, '123456789')}-0000"])
        elif kind == "bad_nino":
            text = r.choice([f"BG{d(6)}A", f"GB {d(2)} {d(2)} {d(2)} C", f"QQ{d(6)}C", f"AB{d(6)}E", f"DA{d(6)}B"])
        elif kind == "ip_version":
            text = r.choice([f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                             f"v{r.randint(1, 9)}.{r.randint(0, 20)}.0",
                             f"build {r.randint(2019, 2027)}.{r.randint(1, 12)}.{r.randint(1, 30)}"])
        elif kind == "uuid":
            h = f"{r.getrandbits(128):032x}"
            text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        elif kind == "prose":
            text = r.choice(["I reset my password yesterday", "the token expired again", "my API key stopped working",
                             "Password: forgotten", "state-of-the-art-customer-service-experience",
                             "internationalisation_and_localisation_settings", "secret: none"])
        else:
            text = r.choice([f"error code {d(4)}", f"ext. {d(4)}", f"3 x {r.randint(100, 999)} ml",
                             f"room {d(3)}", f"{r.randint(2, 99)} days"])
        return kind, text


def rnd_upper(r: random.Random, n: int) -> str:
    return "".join(r.choices(string.ascii_uppercase + string.digits, k=n))


TEMPLATES: dict[str, tuple[str, ...]] = {
    "EMAIL": ("You can reach me at {v}.", "my email: {v}", "(contact: {v})", "Contact <{v}>", "mailto:{v}",
              "Please write to {v}, thanks"),
    "PHONE": ("Call me on {v}.", "phone: {v}", "my number is {v}, after 5pm", "(tel. {v})", "Mobile:{v}",
              "ring {v} anytime"),
    "CARD": ("My card number is {v}.", "card {v} exp 12/27", "card: {v}, cvv on the back", "({v})",
             "the card ending is {v}"),
    "IBAN": ("My IBAN is {v}.", "IBAN: {v}", "pay to {v} please", "account ({v})"),
    "SSN": ("SSN {v}", "my social security number is {v}.", "ssn: {v}", "(SSN {v})"),
    "NINO": ("NI number {v}", "my National Insurance number is {v}.", "NINO: {v}", "(NI {v})"),
    "SECRET": ("here is my key {v} please rotate", "token {v}", "Authorization: Bearer {v}", "key:\n{v}\n",
               "I accidentally posted {v} in chat"),
}


# Punctuation that people put around values.
WRAPPERS = ('"{v}"', "'{v}'", "[{v}]", "*{v}*", "<{v}>", "{v};", "{v}...", "({v}),", "`{v}`", "{v}\t", ":{v}")


def _make(values: Values, kind: str) -> tuple[str, str]:
    """A sentence with one planted value of `kind`: (sentence, value)."""
    r = values.r
    if kind == "SECRET" and r.random() < 0.3:
        template, value = values.kv_secret()
        return template.replace("{v}", value), value
    if kind == "NINO" and r.random() < 0.1:
        value = values.nino()[:-1].rstrip()
        sentence = r.choice(["NINO {v}", "my NI number is {v}", "National Insurance number: {v}"])
        return sentence.replace("{v}", value), value
    if kind == "SSN" and r.random() < 0.2:
        value = values.ssn().replace("-", "").replace(" ", "")
        return r.choice(["SSN {v}", "my SSN is {v}", "social security number: {v}"]).replace("{v}", value), value
    make: dict[str, Callable[[], str]] = {
        "EMAIL": values.email, "PHONE": values.phone, "CARD": values.card, "IBAN": values.iban,
        "SSN": values.ssn, "NINO": values.nino, "SECRET": values.secret,
    }
    value = make[kind]()
    wrapped = r.choice(WRAPPERS).replace("{v}", value) if r.random() < 0.3 else value
    return r.choice(TEMPLATES[kind]).replace("{v}", wrapped), value


def build_corpus(tickets: int, seed: int) -> list[CorpusTicket]:
    """`tickets` tickets: simulator text plus 1-3 planted sentences and 1-3 decoys each, shuffled."""
    rng = random.Random(seed)
    values = Values(rng)
    sim = TicketGenerator(seed=seed, pii_rate=0.5)
    corpus = []
    for _ in range(tickets):
        st = sim.generate()
        # (text, planted values in it, decoy kind or None)
        segments: list[tuple[str, list[tuple[str, str]], str | None]] = []
        base_planted = []
        lowered = st.text.lower()
        for kind, found in st.pii.items():
            for v in found:
                i = lowered.find(v.lower())
                base_planted.append((kind, st.text[i : i + len(v)]))
        segments.append((st.text, base_planted, None))
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(PII_TYPES)
            sentence, value = _make(values, kind)
            segments.append((sentence, [(kind, value)], None))
        for _ in range(rng.randint(1, 3)):
            dkind, dtext = values.decoy()
            segments.append((rng.choice(["See {d}.", "ref {d}", "({d})", "{d}", "on {d} I paid"]).replace("{d}", dtext),
                             [], f"{dkind}:{dtext}"))
        rng.shuffle(segments)
        ticket = CorpusTicket(text="")
        parts: list[str] = []
        pos = 0
        for seg_text, planted, decoy in segments:
            if parts:
                sep = rng.choice([" ", " ", "\n", "\n\n"])
                parts.append(sep)
                pos += len(sep)
            for kind, v in planted:
                i = seg_text.find(v)
                if i < 0:
                    raise AssertionError(f"planted {kind} value not in its sentence: {seg_text!r}")
                ticket.planted.append(Planted(kind, pos + i, pos + i + len(v), v))
            if decoy is not None:
                kind_name, dtext = decoy.split(":", 1)
                i = seg_text.find(dtext)
                ticket.decoys.append((kind_name, pos + i, pos + i + len(dtext)))
            parts.append(seg_text)
            pos += len(seg_text)
        ticket.text = "".join(parts)
        corpus.append(ticket)
    return corpus


def score(corpus: list[CorpusTicket]) -> dict[str, object]:
    """Per-type recall (planted value fully covered by a mask of its type) and precision, plus leaks."""
    per: dict[str, dict[str, int]] = {t: dict(planted=0, detected=0, exact=0, found=0, true_pos=0) for t in PII_TYPES}
    decoys: dict[str, dict[str, int]] = {}
    leaks: list[str] = []
    roundtrip_failures = 0
    flagged: list[str] = []
    misses: dict[str, list[str]] = {t: [] for t in PII_TYPES}
    false_pos: dict[str, list[str]] = {t: [] for t in PII_TYPES}
    texts = [t.text for t in corpus]
    for ticket, all_found, result in zip(corpus, find_pii_many(texts), mask_many(texts), strict=True):
        found = [f for f in all_found if f.type in PII_TYPES]
        for p in ticket.planted:
            per[p.type]["planted"] += 1
            if any(f.type == p.type and f.start <= p.start and f.end >= p.end for f in found):
                per[p.type]["detected"] += 1
            elif len(misses[p.type]) < 20:
                misses[p.type].append(ticket.text[max(p.start - 25, 0) : p.end + 25])
            if any(f.type == p.type and f.start == p.start and f.end == p.end for f in found):
                per[p.type]["exact"] += 1
        for f in found:
            per[f.type]["found"] += 1
            if any(p.type == f.type and p.start < f.end and f.start < p.end for p in ticket.planted):
                per[f.type]["true_pos"] += 1
            elif len(false_pos[f.type]) < 20:
                false_pos[f.type].append(f.value)
        for kind, s, e in ticket.decoys:
            d = decoys.setdefault(kind, {"count": 0, "flagged": 0})
            d["count"] += 1
            hits = [f for f in found if f.start < e and s < f.end]
            d["flagged"] += bool(hits)
            if hits and len(flagged) < 20:
                flagged.append(f"{kind}: {ticket.text[s:e]!r} as {hits[0].type}")
        leaks.extend(p.value for p in ticket.planted if p.value in result.text)
        roundtrip_failures += restore(result.text, result.mapping) != ticket.text
    types = {}
    for t, c in per.items():
        recall = c["detected"] / c["planted"] if c["planted"] else 1.0
        precision = c["true_pos"] / c["found"] if c["found"] else 1.0
        types[t] = {**c, "false_pos": c["found"] - c["true_pos"], "recall": round(recall, 4),
                    "precision": round(precision, 4), "exact_span": round(c["exact"] / max(c["planted"], 1), 4),
                    "passed": recall >= RECALL_MIN and precision >= PRECISION_MIN}
    return {"types": types, "decoy_kinds": decoys, "leaks": len(leaks), "roundtrip_failures": roundtrip_failures,
            "examples": {"missed": {t: m for t, m in misses.items() if m},
                         "false_positives": {t: f for t, f in false_pos.items() if f}, "decoys_flagged": flagged}}
