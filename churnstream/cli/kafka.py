"""``churn-kafka`` / ``python -m churnstream.broker`` (the ``make kafka-*`` targets): the local broker launcher."""

from __future__ import annotations

import argparse
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.cli.connection import add_connection_options, load_settings_with
from churnstream.localkafka.cluster import (
    check_layout_matches,
    down,
    reset,
    start_node,
    status,
    stop_node,
    up,
    wait_until_ready,
)
from churnstream.localkafka.install import KAFKA_VERSION, fetch_libs, require_java
from churnstream.localkafka.layout import DEFAULT_HOME, Layout, load_layout
from churnstream.localkafka.tools import TOOLS, run_tool

PROG = "python -m churnstream.broker"


def _layout_from_args(args: argparse.Namespace) -> Layout:
    home = Path(args.home).resolve()
    saved = load_layout(home)
    brokers = getattr(args, "brokers", None)
    port = getattr(args, "port", None)
    controller_port = getattr(args, "controller_port", None)
    secure = getattr(args, "secure", False)
    base = saved or Layout(home=home)
    return Layout(
        home=home,
        brokers=brokers or base.brokers,
        port=port or base.port,
        controller_port=controller_port or base.controller_port,
        secure=secure or base.secure,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "Run a local Apache Kafka (KRaft mode) for this project, without Docker.",
        epilog="Examples:\n  make kafka-up\n  make kafka-tool ARGS='kafka-topics --list'\n  make kafka-down",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=DEFAULT_HOME,
        help="runtime folder for data, logs and pids (default: broker/run in the project folder)",
    )
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def layout_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--brokers",
            type=int,
            choices=(1, 3),
            help="number of broker nodes (default 1, or what the home was formatted with)",
        )
        sub.add_argument("--port", type=int, help="client port of node 1 (default 29092; node n adds 100*(n-1))")
        sub.add_argument("--controller-port", type=int, help="controller port of node 1 (default 29093)")

    sub = commands.add_parser("up", help="start the broker (formats storage on first use) and wait until it answers")
    layout_options(sub)
    sub.add_argument("--fresh", action="store_true", help="wipe the data first")
    sub.add_argument(
        "--secure",
        action="store_true",
        help="also listen with SASL_SSL (SCRAM-SHA-512, ACLs) on port+2; client settings in <home>/secure/client.env",
    )
    sub = commands.add_parser("down", help="stop the broker cleanly (SIGTERM, wait); data is kept")
    sub.add_argument("--node", type=int, help="stop only this node (1-based)")
    commands.add_parser("status", help="say whether the broker runs; exit 0 only if every node runs")
    commands.add_parser("reset", help="stop the broker and wipe its data")
    sub = commands.add_parser("kill", help="hard-kill (SIGKILL) a node, for fault tests")
    sub.add_argument("--node", type=int, default=1, help="node to kill (1-based, default 1)")
    sub = commands.add_parser("start", help="start one stopped node of an existing cluster")
    sub.add_argument("--node", type=int, default=1, help="node to start (1-based, default 1)")
    commands.add_parser("fetch", help="only download Kafka from Maven Central into broker/libs")
    commands.add_parser("bootstrap", help="print the bootstrap servers of this home")
    sub = commands.add_parser(
        "tool",
        help="run a Kafka tool with the pipeline's settings (KAFKA_*, .env), e.g.: tool kafka-topics --list",
        description="Run one of Kafka's tools where the pipeline goes, as its user: KAFKA_BOOTSTRAP_SERVERS (else "
        "the local cluster) and, for a secure cluster, a --command-config written from the same settings.",
    )
    add_connection_options(sub)
    sub.add_argument("tool", help="one of: " + ", ".join(sorted(TOOLS)))
    sub.add_argument("tool_args", nargs="...", help="arguments for the tool")

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        layout = _layout_from_args(args)
        if args.command == "up":
            print(up(layout, fresh=args.fresh))
        elif args.command == "down":
            if args.node:
                print("stopped" if stop_node(layout, args.node - 1) else "not running")
            else:
                print(down(layout))
        elif args.command == "status":
            running, text = status(layout)
            print(text)
            return 0 if running else 1
        elif args.command == "reset":
            print(reset(layout))
        elif args.command == "kill":
            print("killed" if stop_node(layout, args.node - 1, hard=True) else "not running")
        elif args.command == "start":
            check_layout_matches(layout)
            start_node(layout, args.node - 1)
            wait_until_ready(layout)
            print(f"node {args.node} is up")
        elif args.command == "fetch":
            require_java()
            print(f"Kafka {KAFKA_VERSION} libraries in {fetch_libs()}")
        elif args.command == "bootstrap":
            print(layout.bootstrap_servers)
        elif args.command == "tool":
            return run_tool(layout, args.tool, args.tool_args, load_settings_with(args))
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
