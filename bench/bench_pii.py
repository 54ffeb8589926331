"""PII gate benchmark: recall, precision and F2 per kind, first on tickets the detector was not written against.

1. Independent: the hand-labelled tickets of tests/data/pii/, written for the purpose without reading the
   detector: names, addresses, postcodes, dates of birth, bank accounts, documents, IPs, URLs and the
   structured kinds, plus business facts that must survive. `dev` and `dev2` were tuned on; `test` was
   written afterwards and only measured (see tests/data/pii/README.md).
   Bars (issue 18), on `test`: recall >= 98 % over all kinds and >= 90 % per kind, facts kept >= 95 %.
   Also: Banking77's test split (real customer questions without personal data, ../shared/data): the share
   of its texts that the gate changes at all.
2. Generated (the easier line): simulator tickets plus planted values of the structured kinds in our own
   formats, and decoys (amounts, dates, ids, checksum-invalid look-alikes). Bars: recall 99 %, precision 95 %.

Writes `bench/results/pii.json`, prints both tables, exits 1 when a bar is missed or a value leaks.

    .venv/bin/python bench/bench_pii.py [--tickets 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.simulator import TicketGenerator
from tests.support import pii_labelled
from tests.support.pii_corpus import PRECISION_MIN, RECALL_MIN, CorpusTicket, build_corpus, score
from triage.pii import mask, mask_many

RESULTS = Path(__file__).resolve().parent / "results" / "pii.json"


def _best_times(texts: list[str], repeats: int = 5) -> list[float]:
    """Per text, the fastest of `repeats` runs of `mask` in microseconds (the least disturbed by other load)."""
    best = [float("inf")] * len(texts)
    for _ in range(repeats):
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            mask(text)
            best[i] = min(best[i], (time.perf_counter() - t0) * 1e6)
    return best


def _chunks(texts: list[str], size: int = 500, limit: int = 1000) -> list[str]:
    joined = "\n".join(texts)
    return [joined[i : i + size] for i in range(0, len(joined) - size, size)][:limit]


def timing(corpus: list[CorpusTicket], seed: int) -> dict[str, float]:
    """`mask` time per corpus ticket, and on 500-character texts of this corpus (PII-dense) and of plain
    simulator traffic (its default PII rate): the "typical 500-character ticket" of the target."""
    per_ticket = _best_times([t.text for t in corpus])
    dense = _best_times(_chunks([t.text for t in corpus]))
    plain = _best_times(_chunks([t.text for t in TicketGenerator(seed=seed + 1).stream(4000)]))

    def p(values: list[float], q: int) -> float:
        return round(statistics.quantiles(values, n=100)[q - 1], 1)

    return {"ticket_chars_mean": round(statistics.mean(len(t.text) for t in corpus), 1),
            "mask_us_mean": round(statistics.mean(per_ticket), 1), "mask_us_p50": p(per_ticket, 50),
            "mask_us_p99": p(per_ticket, 99),
            "mask_500_chars_dense_us_mean": round(statistics.mean(dense), 1),
            "mask_500_chars_dense_us_p99": p(dense, 99),
            "mask_500_chars_sim_us_mean": round(statistics.mean(plain), 1),
            "mask_500_chars_sim_us_p99": p(plain, 99),
            "mask_many_batch32_sim_us_per_ticket": _batch_time([t.text for t in TicketGenerator(seed=seed + 2).stream(
                1024)]),
            "method": "fastest of 5 runs per text, time.perf_counter; batches: total time / tickets"}  # type: ignore[dict-item]


def _batch_time(texts: list[str], size: int = 32) -> float:
    """Microseconds per ticket of `mask_many` on batches of `size` (how the stream worker masks)."""
    mask_many(texts[:size])  # load the name model first
    t0 = time.perf_counter()
    for i in range(0, len(texts), size):
        mask_many(texts[i : i + size])
    return round((time.perf_counter() - t0) * 1e6 / len(texts), 1)


BANKING77_TEST = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "banking77" / "test.csv"


def banking77_untouched(path: Path = BANKING77_TEST) -> dict[str, object]:
    """How many of Banking77's test questions (no personal data in them) the gate changes: false masks."""
    import csv

    if not path.is_file():
        return {"skipped": f"{path} not found"}
    with path.open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    changed = [(t, r.counts) for t, r in zip(texts, mask_many(texts), strict=True) if r.text != t]
    from triage.pii import may_hold_name

    return {"source": str(path), "texts": len(texts), "changed": len(changed),
            "asked_name_model": round(sum(map(may_hold_name, texts)) / len(texts), 4),
            "changed_share": round(len(changed) / len(texts), 4), "examples": changed[:10]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tickets", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    independent = {split: pii_labelled.score(pii_labelled.load(split)) for split in pii_labelled.SPLITS}
    banking77 = banking77_untouched()
    corpus = build_corpus(args.tickets, args.seed)
    result = score(corpus)
    times = timing(corpus, args.seed)
    types = result["types"]
    assert isinstance(types, dict)
    generated_passed = (all(v["passed"] for v in types.values()) and result["leaks"] == 0
                        and result["roundtrip_failures"] == 0)
    passed = independent["test"]["passed"] and generated_passed
    report = {
        "benchmark": "pii", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed, "tickets": len(corpus), "planted": sum(len(t.planted) for t in corpus),
        "decoys": sum(len(t.decoys) for t in corpus),
        "python": platform.python_version(), "platform": platform.platform(), "cores": os.cpu_count(),
        "independent": {"source": "tests/data/pii (hand-labelled; see its README)",
                        "thresholds": {"recall_all": pii_labelled.RECALL_ALL_MIN,
                                       "recall_each_kind": pii_labelled.RECALL_KIND_MIN,
                                       "facts_kept": pii_labelled.KEEP_MIN}, **independent},
        "generated": {"thresholds": {"recall": RECALL_MIN, "precision": PRECISION_MIN}, **result,
                      "passed": generated_passed},
        "banking77_no_pii": banking77, "timing": times, "passed": passed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for split, r in independent.items():
        print(f"Independent corpus, {split} split: {r['tickets']} tickets, {r['planted']} planted values, "
              f"{r['facts']} business facts")
        print(f"{'kind':<16}{'planted':>8}{'missed':>8}{'recall':>9}{'found':>7}{'false+':>8}{'precision':>11}{'F2':>8}")
        for k, c in r["kinds"].items():
            rec = "" if c["recall"] is None else f"{c['recall']:.1%}"
            pre = "" if c["precision"] is None else f"{c['precision']:.1%}"
            f2 = "" if c["f2"] is None else f"{c['f2']:.3f}"
            print(f"{k:<16}{c['planted']:>8}{c['planted'] - c['caught']:>8}{rec:>9}{c['found']:>7}"
                  f"{c['found'] - c['true_pos']:>8}{pre:>11}{f2:>8}")
        print(f"{'all kinds':<16}{r['planted']:>8}{'':>8}{r['recall']:>9.1%}{r['found']:>7}{'':>8}"
              f"{r['precision']:>11.1%}{r['f2']:>8.3f}   facts kept {r['facts_kept']:.1%}"
              f"{'' if r['passed'] else '  FAIL'}")
    if "texts" in banking77:
        print(f"Banking77 test split (no personal data): {banking77['changed']} of {banking77['texts']} texts "
              f"changed ({banking77['changed_share']:.2%})")
    print(f"Generated corpus: {len(corpus)} tickets, {report['planted']} planted values, {report['decoys']} decoys, "
          f"seed {args.seed}, Python {report['python']}, {report['cores']} cores")
    print(f"{'type':<8}{'planted':>9}{'missed':>8}{'found':>7}{'false+':>8}{'recall':>9}{'precision':>11}{'exact':>8}")
    for t, v in types.items():
        flag = "" if v["passed"] else "  FAIL"
        print(f"{t:<8}{v['planted']:>9}{v['planted'] - v['detected']:>8}{v['found']:>7}{v['false_pos']:>8}"
              f"{v['recall']:>9.2%}{v['precision']:>11.2%}{v['exact_span']:>8.1%}{flag}")
    flagged = {k: v["flagged"] for k, v in result["decoy_kinds"].items() if v["flagged"]}  # type: ignore[attr-defined]
    print(f"decoys flagged: {flagged or 'none'}; leaked planted values: {result['leaks']}; "
          f"restore mismatches: {result['roundtrip_failures']}")
    print(f"mask time (best of 5): {times['mask_us_mean']} us/ticket mean ({times['ticket_chars_mean']} chars), "
          f"p99 {times['mask_us_p99']} us; 500-char text: {times['mask_500_chars_sim_us_mean']} us mean "
          f"(simulator traffic), {times['mask_500_chars_dense_us_mean']} us (this PII-dense corpus)")
    print(f"wrote {args.out}")
    if not passed:
        print("FAILED: the independent test split misses a bar (recall 98 % / 90 % per kind, facts 95 %), or a "
              "generated type is below recall 99 % / precision 95 %, or a value leaked", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
