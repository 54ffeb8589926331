"""`triage up | down | status | simulate`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from triage.settings import get_settings


def register(sub: Any) -> None:
    up = sub.add_parser("up", help="start the whole stack and keep it running until Ctrl-C")
    up.add_argument("--no-simulator", action="store_true", help="do not start the ticket simulator")
    up.add_argument("--no-airflow", action="store_true", help="do not start Airflow")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop everything `triage up` started")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="print each part's health; exit 1 if any is unhealthy")
    status.set_defaults(func=cmd_status)

    sim = sub.add_parser("simulate", help="generate realistic support traffic (Kafka or CSV)")
    sim.add_argument("--rate", type=float, default=5.0, help="tickets per second (default 5)")
    sim.add_argument("--count", type=int, default=None, help="stop after N tickets (default: forever)")
    sim.add_argument("--seed", type=int, default=0, help="random seed for repeatable traffic")
    sim.add_argument(
        "--drift-after", type=int, default=None, help="after N tickets, shift vocabulary and intent mix (drift mode)"
    )
    sim.add_argument(
        "--feedback-rate", type=float, default=0.3, help="share of decisions a reviewer answers (default 0.3)"
    )
    sim.add_argument("--feedback-delay", type=float, default=10.0, help="seconds before feedback arrives")
    sim.add_argument("--malformed-rate", type=float, default=0.0, help="share of malformed messages to mix in")
    sim.add_argument("--ood-rate", type=float, default=0.02, help="share of out-of-scope tickets")
    sim.add_argument(
        "--to-csv",
        type=Path,
        default=None,
        help="write a labelled training CSV instead of producing to Kafka (needs --count)",
    )
    sim.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="paraphrase these example texts (CSV: text,intent[,urgency]) instead of the workspace's examples.csv; "
        "the workspace's taxonomy names the labels (default: the bank's own traffic for the bank's taxonomy)",
    )
    sim.set_defaults(func=cmd_simulate)


def cmd_up(args: argparse.Namespace) -> int:
    from apps.stack.supervisor import Supervisor

    settings = get_settings()
    if args.no_airflow:
        settings = settings.model_copy(update={"airflow": False})
    Supervisor(settings, simulate=not args.no_simulator).up()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from apps.stack.supervisor import down

    down(get_settings())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from apps.stack.supervisor import drafting_summary, health, llm_line

    settings = get_settings()
    result = health(settings)
    notes = {"llm": llm_line(settings), "drafting": drafting_summary(settings)}
    for name, reason in result.items():
        note = reason if reason is not None else notes.get(name, "")
        print(f"{name:10} {'healthy' if reason is None else 'UNHEALTHY'}  {note}".rstrip())
    return 0 if all(r is None for r in result.values()) else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    from apps import simulator
    from apps.cli.common import UsageError
    from apps.sim_examples import generator_for

    if args.rate <= 0:
        raise UsageError(f"--rate {args.rate} must be positive")
    settings = get_settings()
    gen = generator_for(settings.workspace, seed=args.seed, ood_rate=args.ood_rate, drift_after=args.drift_after,
                        examples=args.examples)
    token = settings.simulator_console_token
    console = None if token is None or args.to_csv is not None else simulator.ConsoleReviewer(
        f"http://127.0.0.1:{settings.console_port}", token.get_secret_value())
    if args.to_csv is not None:
        if not args.count:
            raise UsageError("--to-csv needs --count N (how many labelled rows to write)")
        n = simulator.write_csv(args.to_csv, args.count, args.seed, generator=gen)
        print(f"wrote {n} labelled tickets to {args.to_csv}")
        return 0
    stats = asyncio.run(
        simulator.run(
            settings.bootstrap_servers,
            rate=args.rate,
            count=args.count,
            seed=args.seed,
            drift_after=args.drift_after,
            feedback_rate=args.feedback_rate,
            feedback_delay=args.feedback_delay,
            malformed_rate=args.malformed_rate,
            ood_rate=args.ood_rate,
            generator=gen,
            console=console,
        )
    )
    print(f"sent {stats.tickets} tickets, {stats.malformed} malformed, {stats.feedback} feedback events "
          f"({stats.console_reviews} as reviews in the console)")
    return 0
