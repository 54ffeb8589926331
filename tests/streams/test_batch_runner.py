"""`BatchRunner` ordering: batches classified at once are still stored and acked in arrival order.

Pure asyncio: the stages are small coroutines and the stream only records acks (no broker needed
to test the order the runner imposes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streams.app import BatchRunner, Stages
from streams.pipeline import RawMessage


@dataclass
class _Message:
    value: bytes
    offset: int
    topic: str = "tickets.raw"
    partition: int = 0
    key: bytes | None = None


@dataclass
class _Event:
    message: _Message


class _Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: _Event) -> bool:
        self.acked.append(event.message.offset)
        return True


def _batch(first: int, n: int) -> list[_Event]:
    return [_Event(_Message(str(i).encode(), i)) for i in range(first, first + n)]


def test_later_batches_may_finish_classifying_first_but_are_stored_and_acked_in_order() -> None:
    stored: list[int] = []
    released: list[int] = []
    in_decide = 0
    most_in_decide = 0
    # Batch 0 classifies slowest, batch 2 fastest.
    delay = {0: 0.15, 3: 0.10, 6: 0.01}

    def admit(msgs: list[RawMessage]) -> int:
        return msgs[0].src.offset

    async def decide(first: int) -> int:
        nonlocal in_decide, most_in_decide
        in_decide += 1
        most_in_decide = max(most_in_decide, in_decide)
        await asyncio.sleep(delay[first])
        in_decide -= 1
        return first

    async def persist(first: int) -> None:
        stored.append(first)

    async def dead_letter_all(msgs: list[RawMessage], reason: str) -> None:
        raise AssertionError(f"no batch should fail here: {reason}")

    async def run() -> _Stream:
        stream = _Stream()
        runner = BatchRunner(stream, Stages(admit, decide, persist, dead_letter_all, released.append),  # type: ignore[arg-type]
                             depth=3)
        for first in (0, 3, 6):
            await runner.submit(_batch(first, 3))  # type: ignore[arg-type]
        await runner.drain()
        return stream

    stream = asyncio.run(run())
    assert most_in_decide == 3, "all three batches were classifying at the same time"
    assert stored == [0, 3, 6]
    assert stream.acked == list(range(9))
    assert sorted(released) == [0, 3, 6]


def test_a_failing_batch_is_dead_lettered_in_its_turn_and_the_next_one_still_stored() -> None:
    events: list[str] = []

    def admit(msgs: list[RawMessage]) -> int:
        return msgs[0].src.offset

    async def decide(first: int) -> int:
        if first == 0:
            raise ValueError("boom")
        return first

    async def persist(first: int) -> None:
        events.append(f"stored {first}")

    async def dead_letter_all(msgs: list[RawMessage], reason: str) -> None:
        events.append(f"dead {[m.src.offset for m in msgs]} {reason}")

    async def run() -> _Stream:
        stream = _Stream()
        runner = BatchRunner(stream, Stages(admit, decide, persist, dead_letter_all), depth=2)  # type: ignore[arg-type]
        await runner.submit(_batch(0, 2))  # type: ignore[arg-type]
        await runner.submit(_batch(2, 2))  # type: ignore[arg-type]
        await runner.drain()
        return stream

    stream = asyncio.run(run())
    assert events == ["dead [0, 1] internal error: ValueError: boom", "stored 2"]
    assert stream.acked == [0, 1, 2, 3]


def test_depth_bounds_the_batches_in_flight() -> None:
    gate = asyncio.Event()
    started: list[int] = []

    async def decide(first: int) -> int:
        started.append(first)
        await gate.wait()
        return first

    async def noop(*_a: Any) -> None:
        return None

    async def run() -> list[int]:
        runner = BatchRunner(_Stream(), Stages(lambda msgs: msgs[0].src.offset, decide, noop, noop),  # type: ignore[arg-type]
                             depth=2)
        await runner.submit(_batch(0, 1))  # type: ignore[arg-type]
        await runner.submit(_batch(1, 1))  # type: ignore[arg-type]
        third = asyncio.ensure_future(runner.submit(_batch(2, 1)))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        seen = list(started)
        assert not third.done(), "a third batch waits for a free slot"
        gate.set()
        await third
        await runner.drain()
        return seen

    assert asyncio.run(run()) == [0, 1]
