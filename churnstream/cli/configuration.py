"""The configuration reference (docs/reference/configuration.md): every setting in one table.

Built from the code, so it cannot drift: the variables from churnstream/settings.py (``ALL_VARIABLES``
and ``CHURN_DOTENV``), each default as ``python config.py`` prints it with nothing set, what each
takes from the validator's own refusal, the flags from the commands' parsers (a flag whose help says
``default: VARIABLE`` or ``(VARIABLE)`` stands in for it), and the Kafka properties from
churnstream/kafka/properties.py. Only the meanings are written here, and a variable without one
stops ``make docs``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from churnstream.cli.registry import COMMANDS
from churnstream.errors import ConfigError
from churnstream.kafka.properties import AS_SETTINGS
from churnstream.settings import (
    ALL_VARIABLES,
    ENV_BOOTSTRAP_SERVERS,
    ENV_CHECKPOINT_DIR,
    ENV_CONSUMER_GROUP,
    ENV_CONSUMER_INSTANCE_ID,
    ENV_CONSUMER_WAIT_FOR_TOPIC_S,
    ENV_DATA_PATH,
    ENV_DEADLETTER_RETENTION_MS,
    ENV_DOTENV,
    ENV_EVENT_SCHEMA,
    ENV_LOG_FORMAT,
    ENV_METRICS_ADDRESS,
    ENV_METRICS_PORT,
    ENV_MODEL_PATH,
    ENV_MODEL_STORE,
    ENV_PRODUCER_METRICS_PORT,
    ENV_REPLICATION_FACTOR,
    ENV_SASL_MECHANISM,
    ENV_SASL_PASSWORD,
    ENV_SASL_USERNAME,
    ENV_SECURITY_PROTOCOL,
    ENV_SSL_CAFILE,
    ENV_SSL_CERTFILE,
    ENV_SSL_CHECK_HOSTNAME,
    ENV_SSL_KEY_PASSWORD,
    ENV_SSL_KEYFILE,
    ENV_TOPIC_DEADLETTER,
    ENV_TOPIC_PARTITIONS,
    ENV_TOPIC_PREDICTIONS,
    ENV_TOPIC_PREDICTIONS_SHADOW,
    ENV_TOPIC_RAW,
    PROJECT_ROOT,
    Settings,
    log_format_from,
    settings_from,
)


@dataclass(frozen=True)
class Note:
    meaning: str
    takes: str | None = None  # for a value the validator takes as it is (a name, a path, a secret)


PATH = "a path ([relative](#relative-paths) to the project folder)"
NOTES: dict[str, Note] = {
    ENV_BOOTSTRAP_SERVERS: Note("the brokers to connect to first; the local broker listens on `localhost:29092`"),
    ENV_TOPIC_RAW: Note("the events: the producer and replay write it, the consumer reads it"),
    ENV_TOPIC_PREDICTIONS: Note("the consumer's predictions"),
    ENV_TOPIC_PREDICTIONS_SHADOW: Note(
        "a shadow model's predictions (`consumer.py --shadow-model VERSION`), read by `churn-model compare`"
    ),
    ENV_TOPIC_DEADLETTER: Note(
        "events that could not be scored, with the reason; replay's ledger is this name plus `.replayed`"
    ),
    ENV_CONSUMER_GROUP: Note(
        "the scoring consumers' group; also the prefix of their transactional ids and of replay's"
    ),
    ENV_TOPIC_PARTITIONS: Note(
        "partitions of a topic the pipeline creates (an existing topic is left as it is): the most consumer "
        "processes that share the work"
    ),
    ENV_REPLICATION_FACTOR: Note(
        "replicas of a topic the pipeline creates; empty: min(3, brokers in the cluster), so 1 on the local "
        "broker and 3 on a cluster"
    ),
    ENV_DEADLETTER_RETENTION_MS: Note(
        "`retention.ms` of the dead-letter topic when the pipeline creates it; -1 keeps dead letters until "
        "someone deletes them"
    ),
    ENV_SECURITY_PROTOCOL: Note("how to talk to the brokers: PLAINTEXT locally, SASL_SSL on most managed clusters"),
    ENV_SASL_MECHANISM: Note("required with `SASL_*`"),
    ENV_SASL_USERNAME: Note("required with `SASL_*`", takes="text"),
    ENV_SASL_PASSWORD: Note(
        "required with `SASL_*`; never printed (`***`), never on a command line", takes="text (a secret)"
    ),
    ENV_SSL_CAFILE: Note("the CA that signed the brokers' certificates (PEM); empty: the system's CAs", takes=PATH),
    ENV_SSL_CERTFILE: Note("mutual TLS: the client's certificate (PEM); with `KAFKA_SSL_KEYFILE`", takes=PATH),
    ENV_SSL_KEYFILE: Note("mutual TLS: the client's private key (PEM; may be the certificate's file)", takes=PATH),
    ENV_SSL_KEY_PASSWORD: Note(
        "the private key's password, if it is encrypted; never printed", takes="text (a secret)"
    ),
    ENV_SSL_CHECK_HOSTNAME: Note(
        "the broker's certificate must name the host connected to; false only for a broker whose "
        "certificate does not (not recommended)"
    ),
    ENV_MODEL_STORE: Note(
        "the model store: `<store>/<version>/` and `<store>/current`, the version consumers serve "
        "([the store](../concepts/model.md#the-model-store))",
        takes=PATH,
    ),
    ENV_MODEL_PATH: Note(
        "empty: follow the store's current version; a path pins one model file (its card beside it), and a "
        "pinned consumer ignores promotions and has no fallback",
        takes=PATH,
    ),
    ENV_DATA_PATH: Note("the CSV the producer sends and training reads", takes=PATH),
    ENV_EVENT_SCHEMA: Note(
        "the event contract the producer writes and training reads ([its reference](event-schema.md)); a "
        "consumer validates against its model's schema instead",
        takes=PATH,
    ),
    ENV_CHECKPOINT_DIR: Note(
        "where `producer.py --mode batch` keeps its resume checkpoints, one per topic", takes=PATH
    ),
    ENV_CONSUMER_INSTANCE_ID: Note(
        "empty: `<host>-<slot>`, the lowest slot free on this host; set it in containers (the pod name), per "
        "process, never in a shared `.env` ([why](../concepts/partitions-and-static-membership.md))"
    ),
    ENV_CONSUMER_WAIT_FOR_TOPIC_S: Note(
        "a consumer started before its input topic exists waits this long for it (one log line; `/readyz` "
        "answers 503 meanwhile), then exits 7; 0: exit 7 at once"
    ),
    ENV_METRICS_PORT: Note(
        "the consumer serves `/metrics`, `/healthz` and `/readyz` on this port; empty: off "
        "([monitoring](../howto/monitoring.md))"
    ),
    ENV_PRODUCER_METRICS_PORT: Note("the producer's `/metrics` port; empty: off"),
    ENV_METRICS_ADDRESS: Note("the interface both metrics ports listen on; empty: every interface"),
    ENV_LOG_FORMAT: Note("log lines on stderr: `text` for a person, `json` for a log pipeline"),
    ENV_DOTENV: Note(
        "which dotenv file to read; `none` reads none. Not read from a dotenv file itself",
        takes="a path, or `none`",
    ),
}

BAD_VALUES = ("\x7f", "-99999999999")  # what no validator takes: its refusal says what it does take
_FLAG_HELP = r"(?:default: {name}\b(?!/)|\({name}\))"


def takes(variable: str) -> str:
    """What the variable takes, in the words of the validator's refusal (``... is not valid: <this>``)."""
    for bad in BAD_VALUES:
        try:
            settings_from({variable: bad}) if variable != ENV_LOG_FORMAT else log_format_from({variable: bad})
        except ConfigError as exc:
            prefix = f"{variable}={bad!r} is not valid: "
            if str(exc).startswith(prefix):
                return str(exc).removeprefix(prefix).removeprefix("expected ")
    written = NOTES[variable].takes
    if written is None:
        raise ValueError(f"{variable}: its validator refuses nothing; say what it takes in NOTES")
    return written


def default(variable: str) -> str:
    """As ``python config.py`` prints it with nothing set (a true or false spelled out); a path below the
    project folder, relative."""
    if variable == ENV_DOTENV:
        return "`.env`"
    value = log_format_from({}) if variable == ENV_LOG_FORMAT else Settings().describe()[variable]
    if not value and takes(variable) == "true or false":  # config.py prints nothing for a flag left at true
        value = "true" if settings_from({variable: "true"}) == settings_from({}) else "false"
    root = str(PROJECT_ROOT)
    if value.startswith(root + "/"):
        value = str(Path(value).relative_to(PROJECT_ROOT))
    return f"`{value}`" if value else "empty"


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:  # noqa: SLF001 - argparse exposes subparsers no other way
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield action


def flags() -> dict[str, dict[str, list[str]]]:
    """Variable -> flag -> the commands whose flag stands in for it."""
    found: dict[str, dict[str, list[str]]] = {}
    for command in COMMANDS:
        for action in _actions(command.build_parser()):
            if not action.option_strings:
                continue
            flag = max(action.option_strings, key=len)
            for variable in (*ALL_VARIABLES, ENV_DOTENV):
                if re.search(_FLAG_HELP.format(name=variable), action.help or ""):
                    commands = found.setdefault(variable, {}).setdefault(flag, [])
                    if command.name not in commands:
                        commands.append(command.name)
    return found


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def configuration_page() -> str:
    by_flag = flags()
    properties: dict[str, list[str]] = {}
    for prop, variable in AS_SETTINGS.items():
        properties.setdefault(variable, []).append(prop)
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `make docs` from churnstream/settings.py, the commands' parsers and "
        "churnstream/kafka/properties.py; the meanings from churnstream/cli/configuration.py. Do not edit: "
        "change those and regenerate. -->",
        "",
        "Every setting of the pipeline is an environment variable, and the same name is its key in a `.env` "
        "file (copy [.env.example](../../.env.example), which lists them all with their defaults, to `.env`). "
        "`.venv/bin/python config.py` prints the settings in effect, the password masked.",
        "",
        "**Which value wins**, first to last: a command's flag (the column below; for the connection also "
        "`--bootstrap-server`, `-X KEY=VALUE` with the Kafka property named below, and `--command-config FILE`, "
        "a Kafka client properties file); the process environment; the `.env` file; the default. "
        "[Connecting with a properties file](../howto/secure-cluster.md#connecting-with-a-properties-file-as-kafkas-"
        "tools-do) lists the Java properties (`sasl.jaas.config`, trust and key stores) that map onto these too.",
        "",
        "## Relative paths",
        "",
        "A relative path in a variable (`.env` or the environment) is relative to the "
        "project folder: the checkout the package runs from (`make setup` installs it editable), or, after "
        "`pip install .`, the folder the command was started in. A relative path given as a flag "
        "(`--data`, `--schema`, `--store`) and `CHURN_DOTENV` are relative to the folder the command was "
        "started in. The default `.env` is the one in the project folder.",
        "",
        "## Every setting",
        "",
        "A bad value stops the command before it connects, with one line that names the variable, the value "
        "and what is allowed (exit 3): `Error: KAFKA_TOPIC_PARTITIONS='lots' is not valid: expected a whole "
        "number from 1 to 1000`.",
        "",
        "| Variable (`.env` key) | Flag | Default | Takes | Meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variable in (*ALL_VARIABLES, ENV_DOTENV):
        note = NOTES[variable]
        flag_cells = [f"`{flag}` ({', '.join(commands)})" for flag, commands in by_flag.get(variable, {}).items()]
        flag_cells += [f"`-X {prop}`" for prop in properties.get(variable, [])]
        flag_text = "; ".join(flag_cells) or "-"
        row = [f"`{variable}`", flag_text, default(variable), takes(variable), note.meaning]
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    lines += [
        "",
        "Options that only a flag sets (batch sizes, timeouts, modes, `--reasons`) are in the "
        "[CLI reference](cli.md), with their defaults.",
    ]
    return "\n".join(lines) + "\n"
