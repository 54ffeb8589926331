"""The PII gate on the hand-labelled corpus of tests/data/pii (written without reading the detector).

`dev` and `dev2` were tuned on: they must keep the issue's bars. `dev3` was tuned on after its first
look and still misses them (brand names read as people, addresses without a street word): its floor is
today's level, so a change that loses ground fails here. `test` was never tuned on; its floor is its
one measurement (bench/baseline/pii.json) less two points. The full per-kind tables are `make bench-pii`.
"""

from __future__ import annotations

import pytest

from tests.support import pii_labelled

# split -> (recall over all kinds, recall of the weakest kind, facts kept)
FLOORS = {
    "dev": (pii_labelled.RECALL_ALL_MIN, pii_labelled.RECALL_KIND_MIN, pii_labelled.KEEP_MIN),
    "dev2": (pii_labelled.RECALL_ALL_MIN, pii_labelled.RECALL_KIND_MIN, pii_labelled.KEEP_MIN),
    "dev3": (0.91, 0.84, 0.94),
    "test": (0.82, 0.55, 0.90),  # measured once on 2026-12-03: 0.840, 0.571 (SECRET), 0.925
}


@pytest.mark.parametrize("split", sorted(FLOORS))
def test_the_gate_keeps_its_level_on_each_labelled_split(split):
    result = pii_labelled.score(pii_labelled.load(split))
    recall_min, kind_min, keep_min = FLOORS[split]
    weakest = min((c["recall"], k) for k, c in result["kinds"].items() if c["recall"] is not None)
    assert result["recall"] >= recall_min, (result["recall"], result["examples"]["missed"])
    assert weakest[0] >= kind_min, weakest
    assert result["facts_kept"] >= keep_min, result["examples"]["facts_lost"]


def test_every_split_labels_every_kind():
    from triage.pii import PII_TYPES

    for split in pii_labelled.SPLITS:
        kinds = {k for t in pii_labelled.load(split) for k, _, _ in t.pii}
        assert kinds == set(PII_TYPES), (split, set(PII_TYPES) ^ kinds)
