"""Score churn events from Kafka in micro-batches; dead-letter what cannot be scored.

``consumer.py`` / ``churn-consumer`` (streaming, exactly-once) or ``--mode batch``.
A thin shell: the start-up is churnstream.consumer.run, the loop churnstream.consumer.loop.
"""

from __future__ import annotations

import argparse

from churnstream.cli.common import (
    add_logging_options,
    add_metrics_address_option,
    count_or_zero,
    make_parser,
    output_file,
    port_number,
    positive_number,
    run,
    seconds_or_zero,
    setup_logging,
    stop_on_signals,
    values,
    whole_number,
)
from churnstream.cli.connection import add_connection_options, load_settings_with
from churnstream.cli.formatting import format_consumer_summary, format_window
from churnstream.consumer.options import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    DEFAULT_LOG_INTERVAL_S,
    DEFAULT_MAX_BATCH,
    DEFAULT_SESSION_TIMEOUT_MS,
    DEFAULT_TRANSACTION_TIMEOUT_MS,
    DEFAULT_WINDOW_SIZE,
    INSTANCE_ID_RULE,
    MAX_TRANSACTION_TIMEOUT_MS,
    MIN_TRANSACTION_TIMEOUT_MS,
    ConsumerOptions,
    valid_instance_id,
)
from churnstream.consumer.run import run_consumer
from churnstream.consumer.stats import WindowSummary
from churnstream.contract.outputs import Guarantee, Mode
from churnstream.files import write_json_atomically
from churnstream.lifecycle import StopFlag
from churnstream.settings import DEFAULT_WAIT_FOR_TOPIC_S, MAX_WAIT_FOR_TOPIC_S

PROG = "consumer.py"

EPILOG = f"""\
exit codes: 0 done or stopped cleanly, 1 outputs could not be delivered/committed or an unexpected
error, 2 broker unreachable, 3 bad setting, 5 model missing, 6 model fails its integrity check,
7 input topic missing (still, after --wait-for-topic), 8/9 authentication/TLS, 12 wrong security
protocol, 13 the model broke (it fails its own canary rows; that batch is not committed), 64 bad
arguments, 130 interrupted (a second Ctrl-C, or one before consuming began). All of them: KAFKA_README.md, "Exit codes".

guarantees: {Guarantee.EXACTLY_ONCE} (default) commits each batch's outputs and input offsets in one Kafka
transaction (read outputs with isolation.level=read_committed); {Guarantee.AT_LEAST_ONCE} commits offsets
after the outputs are acknowledged (a crash can repeat a batch, never lose one).

settings (topics, group, broker, model path) come from the environment or .env: see config.py.
"""


def _transaction_timeout(text: str) -> int:
    value = whole_number(text)
    if not MIN_TRANSACTION_TIMEOUT_MS <= value <= MAX_TRANSACTION_TIMEOUT_MS:
        raise argparse.ArgumentTypeError(
            f"expected {MIN_TRANSACTION_TIMEOUT_MS} to {MAX_TRANSACTION_TIMEOUT_MS} ms, got {text!r}"
        )
    return value


def _wait_for_topic(text: str) -> float:
    value = seconds_or_zero(text)
    if value > MAX_WAIT_FOR_TOPIC_S:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_WAIT_FOR_TOPIC_S:g} seconds, got {text!r}")
    return value


def _instance_id(text: str) -> str:
    if not valid_instance_id(text):
        raise argparse.ArgumentTypeError(f"{text!r}: use {INSTANCE_ID_RULE}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, __doc__.split("\n\n")[0], EPILOG)
    what = parser.add_argument_group("what to run")
    what.add_argument("--mode", choices=values(Mode), default=Mode.STREAMING.value, help="streaming (default) or batch")
    what.add_argument(
        "--guarantee",
        choices=values(Guarantee),
        default=Guarantee.EXACTLY_ONCE.value,
        help="processing guarantee (default %(default)s)",
    )
    what.add_argument(
        "--duration",
        type=positive_number,
        metavar="S",
        help="streaming: stop after S seconds (default: until a signal)",
    )
    what.add_argument(
        "--window-size",
        type=whole_number,
        metavar="N",
        help=f"batch: events per window, one stdout line each (default {DEFAULT_WINDOW_SIZE})",
    )
    what.add_argument(
        "--num-windows",
        type=whole_number,
        metavar="K",
        help="batch: stop after K windows (default: when caught up with the end offsets seen at start)",
    )
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument(
        "--max-batch",
        type=whole_number,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help="most events per poll, i.e. per model call and per commit (default %(default)s)",
    )
    tuning.add_argument(
        "--fetch-max-wait-ms",
        type=count_or_zero,
        default=DEFAULT_FETCH_MAX_WAIT_MS,
        metavar="MS",
        help="how long the broker may hold a fetch for more data; sets latency at low rates (default %(default)s)",
    )
    tuning.add_argument(
        "--instance-id",
        type=_instance_id,
        metavar="ID",
        help="stable id of this consumer (transactional id and static group member; in containers, the pod "
        "name); default: CONSUMER_INSTANCE_ID, else <host>-<slot>, the lowest slot free on this host",
    )
    tuning.add_argument(
        "--wait-for-topic",
        type=_wait_for_topic,
        metavar="S",
        help="started before its input topic exists, wait up to S seconds for it to be created (services "
        f"started in any order), then exit 7; 0 exits at once (default: CONSUMER_WAIT_FOR_TOPIC_S, else "
        f"{DEFAULT_WAIT_FOR_TOPIC_S:g})",
    )
    tuning.add_argument(
        "--no-static-membership",
        dest="static_membership",
        action="store_false",
        help="join as a dynamic member: a clean stop hands partitions over at once, but a restart "
        "after a crash waits for the session timeout",
    )
    tuning.add_argument(
        "--session-timeout-ms",
        type=whole_number,
        default=DEFAULT_SESSION_TIMEOUT_MS,
        metavar="MS",
        help="how soon the group reassigns a silent consumer's partitions (default %(default)s; broker minimum 6000)",
    )
    tuning.add_argument(
        "--transaction-timeout-ms",
        type=_transaction_timeout,
        default=DEFAULT_TRANSACTION_TIMEOUT_MS,
        metavar="MS",
        help="exactly-once: the broker aborts a transaction left open this long; every wait inside a "
        f"transaction is bounded below it ({MIN_TRANSACTION_TIMEOUT_MS}-{MAX_TRANSACTION_TIMEOUT_MS}, "
        "default %(default)s)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--log-interval",
        type=seconds_or_zero,
        default=DEFAULT_LOG_INTERVAL_S,
        metavar="S",
        help="a heartbeat line on stderr every S seconds: counts, events/s and lag; 0 for none (default %(default)s)",
    )
    output.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics on /metrics, and /healthz and /readyz, on this port (default: "
        "METRICS_PORT; off when neither is set)",
    )
    add_metrics_address_option(output)
    output.add_argument("--summary-json", type=output_file, metavar="PATH", help="also write the final summary as JSON")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--shadow-model",
        metavar="VERSION",
        help="also score every batch with this model store version (a challenger) into "
        "KAFKA_TOPIC_PREDICTIONS_SHADOW, in the same transaction; the published predictions are unchanged "
        "(churn-model list shows the versions)",
    )
    model.add_argument(
        "--reasons",
        choices=("on", "off"),
        default="on",
        help="on (default): each prediction names up to three features that raise its risk, by the model's own "
        "method (its card's reasons); off: reasons null, and the cost of finding them saved",
    )
    add_connection_options(parser)
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode == Mode.STREAMING and (args.window_size is not None or args.num_windows is not None):
        parser.error("--window-size and --num-windows apply to --mode batch only")
    if args.mode == Mode.BATCH and args.duration is not None:
        parser.error("--duration applies to --mode streaming only (batch mode stops when caught up)")
    setup_logging(args.verbose, args.quiet, args.log_format)
    options = ConsumerOptions(
        mode=args.mode,
        guarantee=args.guarantee,
        duration_s=args.duration,
        window_size=args.window_size or DEFAULT_WINDOW_SIZE,
        num_windows=args.num_windows,
        max_batch=args.max_batch,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        log_interval_s=args.log_interval,
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        shadow_model=args.shadow_model,
        reasons=args.reasons == "on",
        instance_id=args.instance_id,
        static_membership=args.static_membership,
        session_timeout_ms=args.session_timeout_ms,
        transaction_timeout_ms=args.transaction_timeout_ms,
        wait_for_topic_s=args.wait_for_topic,
    )

    def show_window(window: WindowSummary) -> None:
        print(format_window(window), flush=True)

    def body() -> int:
        settings = load_settings_with(args)
        with stop_on_signals(StopFlag()) as stop:
            summary = run_consumer(settings, options, stop, on_window=show_window)
        print(format_consumer_summary(summary), flush=True)
        if args.summary_json is not None:
            write_json_atomically(args.summary_json, summary.to_json())
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
