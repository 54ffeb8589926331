"""faust's aiokafka consumer with a short fetch wait, for low latency on brokers that hold fetches.

faust 0.15 hard-codes `fetch_max_wait_ms=1500` for the worker's consumer. A broker that answers an
empty fetch only when that wait expires (the embedded Tansu broker does) then adds up to 1.5 s to
every ticket that arrives on an idle partition. `TriageApp` builds its transport with a consumer
that waits at most FETCH_MAX_WAIT_MS instead; everything else is faust's own code.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

FETCH_MAX_WAIT_MS = 20


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka keeps the constructor argument here and hands it to its Fetcher on start().
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TriageApp(faust.App):
    """A faust App whose Kafka consumer polls with a short fetch wait."""

    def _new_transport(self) -> TransportT:
        transport = super()._new_transport()
        if isinstance(transport, faust_aiokafka.Transport):
            transport.Consumer = _Consumer
        return transport
