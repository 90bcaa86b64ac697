"""``--bootstrap-server``, ``--command-config FILE`` and ``-X key=value``: reach any cluster from the command line.

As Kafka's own tools and kcat take them. They override the environment and ``.env``: the file's
properties first, then each ``-X`` in order, then ``--bootstrap-server``. kafka.properties
translates the names; an unknown or unsupported key is one line (exit 3), a malformed ``-X`` or a
file that cannot be read is a usage error (exit 64).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from churnstream.kafka.diagnosis import REDACTOR
from churnstream.kafka.properties import client_option_properties, is_secret_property, parse_properties, translate
from churnstream.settings import ENV_BOOTSTRAP_SERVERS, Settings, load_settings


def _property(text: str) -> tuple[str, str]:
    """The value exactly as typed, spaces included, as kcat hands it to librdkafka (a password may
    end in a space); only the key is trimmed."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key.strip(), value


def _properties_file(text: str) -> Path:
    path = Path(text)
    try:
        path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise argparse.ArgumentTypeError(f"cannot read {text!r}: {reason}") from None
    return path


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (override KAFKA_* from the environment and .env)")
    group.add_argument(
        "--bootstrap-server", metavar="HOST:PORT[,...]", help="the brokers to bootstrap from (KAFKA_BOOTSTRAP_SERVERS)"
    )
    group.add_argument(
        "--command-config",
        type=_properties_file,
        metavar="FILE",
        help="a Kafka client properties file (security.protocol, sasl.*, ssl.*), as Kafka's tools take",
    )
    group.add_argument(
        "-X",
        dest="client_property",
        type=_property,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one client property, repeatable, as kcat takes it (e.g. -X security.protocol=SASL_SSL)",
    )


def client_option_args(settings: Settings) -> list[str]:
    """The tuning options as ``-X`` arguments for a child process, the only part of the connection
    that goes on its command line: the rest, secrets included, reaches it in its environment
    (``Settings.environment``), where another user's ``ps`` cannot read it."""
    return [arg for key, value in client_option_properties(settings) for arg in ("-X", f"{key}={value}")]


def masked_arguments(argv: Sequence[str]) -> list[str]:
    """A command line fit to show (a results file, a report): the value of every secret property
    (``-X sasl.password=...``, ``-Xssl.key.password=...``, inside ``--consumer-arg=...``) is ``***``."""
    return [_masked(arg) for arg in argv]


def _masked(arg: str) -> str:
    for match in re.finditer(r"([A-Za-z0-9._-]+)\s*=", arg):
        if is_secret_property(match.group(1).removeprefix("-X")):
            return arg[: match.end()] + "***"
    return arg


def load_settings_with(args: argparse.Namespace) -> Settings:
    """The settings: environment and ``.env``, then the properties file, -X, --bootstrap-server.

    From here on, the secrets are masked in every log line (and the CLI's error line)."""
    pairs: list[tuple[str, str, str]] = []
    if args.command_config:
        pairs += parse_properties(Path(args.command_config).read_text(encoding="utf-8"), str(args.command_config))
    pairs += [(key, value, f"-X {key}") for key, value in args.client_property]
    translated = translate(pairs)
    overrides = dict(translated.settings)
    if args.bootstrap_server:
        overrides[ENV_BOOTSTRAP_SERVERS] = args.bootstrap_server
    settings = load_settings(overrides=overrides, client_options=translated.client_options)
    for secret in settings.secrets().values():
        REDACTOR.add(secret.reveal())
    return settings
