"""``churn-monitor`` / ``python -m churnstream.cli.monitor`` (the ``make monitor`` targets): a local Prometheus."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, port_number, run, setup_logging
from churnstream.errors import BrokerToolingError
from churnstream.localmonitor.prometheus import (
    CONFIG_FILE,
    DEFAULT_PORT,
    RUN_DIR,
    Server,
    check,
    find_binaries,
    install,
    start,
    stop,
)
from churnstream.observability.server import CONSUMER_METRICS_PORT, PRODUCER_METRICS_PORT

PROG = "python -m churnstream.cli.monitor"
logger = logging.getLogger(__name__)

EPILOG = f"""\
examples:
  make monitor                          # install if needed, start Prometheus on :{DEFAULT_PORT}
  python consumer.py --metrics-port {CONSUMER_METRICS_PORT}    # what it scrapes (the producer: {PRODUCER_METRICS_PORT})
  make monitor-down

exit codes: 0 done, 11 Prometheus cannot be installed or started (the message says how to fix it), 64 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "A local Prometheus (Debian's package, unpacked into .run/prometheus) scraping the pipeline, with the "
        "alert rules of monitoring/.",
        EPILOG,
    )
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = commands.add_parser("install", help="fetch Prometheus and promtool unless found (PATH or .run/prometheus)")
    sub.add_argument(
        "--if-possible", action="store_true", help="where it cannot be installed, say how in one line and exit 0"
    )
    sub = commands.add_parser("up", help="start Prometheus in the background with monitoring/prometheus.yml")
    sub.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="its web port (default %(default)s)")
    sub.add_argument("--config", type=Path, default=CONFIG_FILE, help="its configuration (default monitoring/)")
    commands.add_parser("down", help="stop it (its data stays in .run/prometheus/server)")
    sub = commands.add_parser("check", help="promtool check config and rules, without starting anything")
    sub.add_argument("--config", type=Path, default=CONFIG_FILE, help="the configuration (default monitoring/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        if args.command == "install":
            try:
                binaries = install()
            except BrokerToolingError as exc:
                if not args.if_possible:
                    raise
                print(f"Note: {exc}; make monitor and the Prometheus test need it")
                return 0
            print(f"{binaries.version()} at {binaries.prometheus.parent}")
        elif args.command == "up":
            server = start(install(), args.config.resolve(), args.port)
            print(
                f"Prometheus at {server.url} (alerts: {server.url}/alerts), scraping consumers on "
                f":{CONSUMER_METRICS_PORT} and producers on :{PRODUCER_METRICS_PORT}; make monitor-down stops it"
            )
        elif args.command == "down":
            print("stopped" if stop(Server(DEFAULT_PORT, RUN_DIR / "server")) else "not running")
        elif args.command == "check":
            binaries = find_binaries() or install()
            print(check(binaries, args.config.resolve()))
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
