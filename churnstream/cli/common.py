"""What every script shares at its edge: argument parsing, logging, signals, error translation."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import NoReturn

from churnstream import __version__
from churnstream.cli.logs import formatter
from churnstream.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, PipelineError
from churnstream.lifecycle import StopFlag
from churnstream.settings import LOG_FORMATS, listen_address
from churnstream.settings import log_format as settings_log_format

logger = logging.getLogger("churnstream")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors exit with EX_USAGE (64), not 2, which means "broker down" here."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"Error: {message}\n")


def make_parser(prog: str, description: str, epilog: str | None = None) -> ArgumentParser:
    """Every command's parser: usage errors exit 64, and ``--version`` prints the package version.

    Run as a console script (``churn-consumer``), the usage line names that; otherwise ``prog``.
    """
    invoked = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = ArgumentParser(
        prog=invoked if invoked.startswith("churn-") else prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def values(choices: type[StrEnum]) -> list[str]:
    """An enum's values, for argparse ``choices`` (the contract's modes, guarantees and stages)."""
    return [member.value for member in choices]


def whole_number(text: str, minimum: int = 1) -> int:
    """argparse type: a whole number of at least ``minimum`` (1 by default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least {minimum}, got {text!r}")
    return value


def whole_numbers(text: str) -> list[int]:
    """argparse type: whole numbers of at least 1, separated by commas (``30,500``)."""
    try:
        return [whole_number(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def count_or_zero(text: str) -> int:
    """argparse type: a whole number of at least 0."""
    return whole_number(text, minimum=0)


def positive_number(text: str) -> float:
    """argparse type: a finite number above 0 (rates, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1 (a threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    value = whole_number(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def metrics_address(text: str) -> str:
    """argparse type: an address to serve metrics on (settings.listen_address decides what is one)."""
    try:
        return listen_address(text, "--metrics-address")
    except PipelineError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--metrics-address=")) from None


def add_metrics_address_option(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    group.add_argument(
        "--metrics-address",
        type=metrics_address,
        metavar="ADDRESS",
        help="the interface the metrics port listens on, e.g. 127.0.0.1 (default: METRICS_ADDRESS, else every "
        "interface, as Prometheus exporters listen)",
    )


def seconds_or_zero(text: str) -> float:
    """argparse type: 0 (never), or a finite number of seconds above 0."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_number(text)


def output_file(text: str) -> Path:
    """argparse type: a file the run will write at its end, checked now, so a typo in the path
    is a usage error before the run rather than a traceback after it."""
    path = Path(text).absolute()  # absolute: subprocesses given it run from the project root
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: the file is not writable")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {ancestor} is not a writable directory")
    return path


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more log output on stderr: -v our debug lines, -vv also the Kafka client's info, -vvv its debug",
    )
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text for a person, json for a log pipeline (one object per line); default: LOG_FORMAT, else text",
    )


def setup_logging(verbose: int = 0, quiet: bool = False, log_format: str | None = None) -> None:
    """Configure the root logger once, at the entry point. Logs go to stderr; stdout is for data."""
    if log_format is None:
        try:
            log_format = settings_log_format()
        except PipelineError as exc:  # a bad LOG_FORMAT: said before anything else, in the default format
            print(f"Error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
    level = logging.WARNING if quiet else logging.DEBUG if verbose >= 1 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python logs every reconnect attempt at INFO and WARNING: its errors show, the rest only
    # when asked for. During a run, kafka.outage.watch_broker turns an outage's storm of lines into
    # two of ours; at start-up kafka.diagnosis reads them to say why a connection failed.
    client_level = {0: logging.ERROR, 1: logging.ERROR, 2: logging.INFO}.get(verbose, logging.DEBUG)
    logging.getLogger("kafka").setLevel(client_level)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SignalHandler = Callable[[int, FrameType | None], None]


@contextmanager
def _handling_stop_signals(handler: SignalHandler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs, the previous handlers after it.
    Only the main thread may install handlers; elsewhere the block runs without them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[StopFlag]:
    """Turn the first SIGINT/SIGTERM into ``stop``; a second one interrupts at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        # Only async-signal-safe work here: no logging (a handler that writes to stderr while the
        # main thread is writing raises "reentrant call"), no locks (lifecycle.StopFlag says why).
        # The loop logs the stop when it sees the flag.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set(signal.Signals(signum).name)

    with _handling_stop_signals(handler):
        yield stop


@contextmanager
def interrupt_once() -> Iterator[None]:
    """The first SIGINT or SIGTERM raises KeyboardInterrupt, so ``finally`` blocks run (the harness's
    clean-up of its subprocesses); later ones are ignored, so that clean-up is not cut short.
    Without it SIGTERM ends Python at once, and a second Ctrl-C interrupts the clean-up: either
    orphans the subprocesses."""

    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt  # run() says "Interrupted"; the finally blocks stop the subprocesses

    with _handling_stop_signals(handler):
        yield


def run(body: Callable[[], int]) -> int:
    """Run a script body, turning expected failures into one line and an exit code."""
    try:
        return body()
    except PipelineError as exc:
        # A secret the message quotes shows as ***. Imported here: kafka-python takes 0.1 s to
        # import, which the commands that never connect (data, training) need not pay.
        from churnstream.kafka.diagnosis import REDACTOR  # noqa: PLC0415

        print(f"Error: {REDACTOR.redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted; no summary.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        # The edge of the process, and the last resort: anything else is a bug, not an input or
        # environment problem we can explain in a line (those are PipelineErrors, and bad events
        # go to the dead-letter topic long before this). Its traceback is what a bug report needs;
        # exit 1, documented as "an unexpected error, with its traceback".
        logger.exception("unexpected error")
        return EXIT_FAILURE
