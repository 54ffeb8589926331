"""`python -m streams worker`: run the stream worker (what `triage up` starts)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from triage.backoff import Backoff
from triage.names import TOPICS
from triage.settings import SettingsError, get_settings

log = logging.getLogger("streams")


def _ensure_topics(bootstrap: str, partitions: int, timeout: float = 60.0) -> None:
    from triage.kafka_admin import ensure_topics

    deadline = time.monotonic() + timeout
    backoff = Backoff(base=0.5)
    while True:
        try:
            ensure_topics(bootstrap, TOPICS, partitions)
            return
        except Exception as exc:  # noqa: BLE001 - retried, then reported with the fix
            if time.monotonic() > deadline:
                raise SystemExit(f"cannot reach Kafka at {bootstrap} ({exc}); start it or set "
                                 "KAFKA_BOOTSTRAP_SERVERS to a reachable broker") from None
            delay = backoff.next()
            log.warning("broker not ready (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)


def worker(loglevel: str) -> int:
    import faust  # noqa: F401 - imported here so `--help` stays fast

    from streams.app import create_app
    from triage.dlq_crypto import DlqKeyError
    from triage.policy import PolicyError
    from triage.taxonomy import TaxonomyError

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _ensure_topics(settings.bootstrap_servers, settings.kafka_partitions)
    try:
        w = create_app(settings)
    except (PolicyError, TaxonomyError, DlqKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    w.app.conf.datadir.parent.mkdir(parents=True, exist_ok=True)
    # Load the models before consuming, so the first tickets are classified, not sent to people, and the PII
    # gate's name model, so the first batch that needs it (a dead letter's text) does not wait for it.
    asyncio.run(w.models.refresh())
    w.pipeline.warm_up()
    log.info("starting with models %s and policy %s", w.models.current.describe(), w.policy.current.version)
    from faust.worker import Worker as FaustWorker

    fw = FaustWorker(w.app, loglevel=loglevel, quiet=True, override_logging=True)
    # faust's terminal spinner, at --loglevel warning or above, sets the root logger to DEBUG so it can
    # spin on every record: every library's debug record would then be built (and dropped) on the hot path.
    fw.spinner = None
    fw.execute_from_commandline()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams", description="Triage stream worker")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="consume tickets.raw and tickets.feedback; serve /health and /metrics")
    w.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "worker":
        return worker(args.loglevel)
    return 2


if __name__ == "__main__":
    sys.exit(main())
