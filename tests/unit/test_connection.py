"""Reaching any cluster: Kafka client properties (--command-config, -X) translated, and refused by name."""

from __future__ import annotations

import argparse
import subprocess
import uuid
from pathlib import Path

import pytest

from churnstream.cli.common import run
from churnstream.cli.connection import (
    add_connection_options,
    client_option_args,
    load_settings_with,
    masked_arguments,
)
from churnstream.cli.registry import COMMANDS, Command
from churnstream.errors import EXIT_CONFIG, EXIT_USAGE, ConfigError, TlsError
from churnstream.harness.processes import child_environment
from churnstream.kafka.clients import security_options
from churnstream.kafka.diagnosis import REDACTOR
from churnstream.kafka.properties import (
    OWNED,
    SUPPORTED,
    is_secret_property,
    java_properties,
    parse_properties,
    translate,
)
from churnstream.settings import load_settings

# The commands that talk to a cluster take the connection options (the others: data, training, launcher).
CONNECTING = [c for c in COMMANDS if "--command-config" in c.build_parser().format_help()]


def test_the_commands_that_talk_to_kafka_take_the_connection_options() -> None:
    assert {c.console_script for c in CONNECTING} >= {
        "churn-producer",
        "churn-consumer",
        "churn-pipeline-test",
        "churn-replay",
    }
    for command in CONNECTING:
        text = command.build_parser().format_help()
        assert "--bootstrap-server" in text
        assert "-X KEY=VALUE" in text


JAVA = """\
# from the cluster admin, as Kafka's tools take it
bootstrap.servers=broker-1.example.com:9093,broker-2.example.com:9093
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
username="churn" password="s3cr\\\\"et";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/ca.pem
connections.max.idle.ms = 300000
"""


def test_a_java_client_properties_file_becomes_our_settings() -> None:
    translated = translate(parse_properties(JAVA, "client.properties"))  # the JAAS line continued, as Java allows
    assert translated.settings == {
        "KAFKA_BOOTSTRAP_SERVERS": "broker-1.example.com:9093,broker-2.example.com:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "churn",
        "KAFKA_SASL_PASSWORD": 's3cr"et',
        "KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
    }
    assert translated.client_options == {"connections_max_idle_ms": 300000}


def test_librdkafka_names_as_kcat_takes_them_and_mutual_tls() -> None:
    pairs = [
        ("security.protocol", "SSL", "-X"),
        ("ssl.ca.location", "/ca.pem", "-X"),
        ("ssl.certificate.location", "/client.pem", "-X"),
        ("ssl.key.location", "/client.key", "-X"),
        ("ssl.key.password", "k", "-X"),
    ]
    settings = translate(pairs).settings
    assert settings["KAFKA_SSL_CERTFILE"] == "/client.pem"
    assert settings["KAFKA_SSL_KEYFILE"] == "/client.key"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "client.pem", directory / "client.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=churn-client",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_settings_reach_kafka_python_with_the_client_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    translated = translate(
        [
            ("bootstrap.servers", "b:9093", "-X"),
            ("security.protocol", "SSL", "-X"),
            ("ssl.ca.location", str(cert), "-X"),
            ("ssl.certificate.location", str(cert), "-X"),
            ("ssl.key.location", str(key), "-X"),
            ("reconnect.backoff.max.ms", "2000", "-X"),
        ]
    )
    settings = load_settings(Path("/nonexistent.env"), translated.settings, translated.client_options)
    options = security_options(settings)
    assert options["security_protocol"] == "SSL"
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == (str(cert), str(key))
    assert dict(settings.client_options) == {"reconnect_backoff_max_ms": 2000}


def test_a_certificate_and_key_that_do_not_belong_together_fail_in_one_line(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = _self_signed(other)
    variables = {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(cert),
        "KAFKA_SSL_CERTFILE": str(cert),
        "KAFKA_SSL_KEYFILE": str(other_key),
    }
    settings = load_settings(Path("/nonexistent.env"), variables)
    with pytest.raises(TlsError) as refused:
        security_options(settings)
    assert "KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE" in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("pairs", "named"),
    [
        ([("ssl.truststore.location", "/ts.jks", "f:1")], "f:1: ssl.truststore.location is a JKS store"),
        ([("sasl.jaas.config", "com.sun.security.auth.module.Krb5LoginModule required;", "f:2")], "f:2: sasl.jaas"),
        ([("fetch.max.wait.ms", "5", "-X fetch.max.wait.ms")], "-X fetch.max.wait.ms: fetch.max.wait.ms is not a"),
        ([("acks", "1", "f:3")], "f:3: acks is set by the pipeline itself"),
        ([("metadata.max.age.ms", "soon", "f:4")], "f:4: metadata.max.age.ms='soon' is not a whole number"),
        ([("enable.ssl.certificate.verification", "false", "f:5")], "f:5: turning certificate verification off"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(pairs: list[tuple[str, str, str]], named: str) -> None:
    with pytest.raises(ConfigError) as refused:
        translate(pairs)
    assert str(refused.value).startswith(named)


def test_every_owned_key_is_refused() -> None:
    for key in OWNED:
        with pytest.raises(ConfigError, match="set by the pipeline itself"):
            translate([(key, "x", "-X")])


def test_a_line_that_is_not_key_value_is_named_with_its_line_number() -> None:
    with pytest.raises(ConfigError, match=r"^c.properties:2: 'security.protocol' has no value"):
        parse_properties("# comment\nsecurity.protocol\n", "c.properties")


def test_whitespace_separates_a_key_from_its_value_as_in_java() -> None:
    assert parse_properties("ssl.key.password  s3cret value\n", "c") == [("ssl.key.password", "s3cret value", "c:1")]


def test_an_x_value_is_kept_as_typed_trailing_spaces_included(monkeypatch: pytest.MonkeyPatch) -> None:
    """kcat hands -X values to librdkafka as typed: a password may end in a space. Before: stripped."""
    monkeypatch.setenv("CHURN_DOTENV", "none")
    parser = argparse.ArgumentParser()
    add_connection_options(parser)
    args = parser.parse_args(["-X", "sasl.password=pw  ", "-X", "ssl.key.password= k ", "-X", " sasl.username =u"])
    settings = load_settings_with(args)
    assert settings.sasl_password is not None and settings.sasl_password.reveal() == "pw  "
    assert settings.ssl_key_password is not None and settings.ssl_key_password.reveal() == " k "
    assert settings.sasl_username == "u"  # the key is trimmed, and a user name is a name


def test_a_properties_file_reads_as_a_java_client_reads_it() -> None:
    """What kafka-clients 4.3.1 made of these lines (Properties.load, then ProducerConfig): trailing
    whitespace kept by the file format, then trimmed by the client's ConfigDef; the JAAS line's
    quoted password keeps its spaces. Before: an escaped trailing space ("secret\\ ") was read as a
    line continuation, and swallowed the next line into the password."""
    text = (
        "ssl.key.password=secret\\ \n"
        "ssl.ca.location=/etc/ca.pem  \n"
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="u" password="pw  ";\t\n'
    )
    pairs = parse_properties(text, "c")
    assert [(key, value) for key, value, _ in pairs] == [
        ("ssl.key.password", "secret"),
        ("ssl.ca.location", "/etc/ca.pem"),
        (
            "sasl.jaas.config",
            'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="pw  ";',
        ),
    ]
    assert translate(pairs).settings["KAFKA_SASL_PASSWORD"] == "pw  "


def test_which_properties_are_secret_is_decided_in_one_place() -> None:
    secret = [key for key in SUPPORTED if is_secret_property(key)]
    assert secret == ["sasl.jaas.config", "sasl.password", "ssl.key.password"]
    # refused keys too, as a command line may still show them
    assert all(map(is_secret_property, ["ssl.truststore.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"]))


def test_a_command_line_is_shown_with_every_secret_masked() -> None:
    typed = ["--mode", "batch", "-X", "sasl.password=pw", "-Xssl.key.password=k", "-X", "reconnect.backoff.ms=5"]
    typed += ['--consumer-arg=-Xsasl.jaas.config=x password="pw";', "-X", "ssl.truststore.password = t"]
    assert masked_arguments(typed) == [
        "--mode",
        "batch",
        "-X",
        "sasl.password=***",
        "-Xssl.key.password=***",
        "-X",
        "reconnect.backoff.ms=5",
        "--consumer-arg=-Xsasl.jaas.config=***",
        "-X",
        "ssl.truststore.password =***",
    ]


def test_a_child_gets_the_connection_in_its_environment_and_only_tuning_on_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the harness hands each process of a run. The parent's own variables cannot override the
    settings (here -X asks for the hostname check that KAFKA_SSL_CHECK_HOSTNAME=false turned off)."""
    monkeypatch.setenv("CHURN_DOTENV", "none")
    monkeypatch.setenv("KAFKA_SSL_CHECK_HOSTNAME", "false")
    monkeypatch.setenv("CONSUMER_INSTANCE_ID", "pod-0")
    parser = argparse.ArgumentParser()
    add_connection_options(parser)
    args = parser.parse_args(
        ["-X", "sasl.password=pw ", "-X", "ssl.endpoint.identification.algorithm=https", "-X", "send.buffer.bytes=9"]
    )
    settings = load_settings_with(args)
    env = child_environment(settings)
    assert env["KAFKA_SASL_PASSWORD"] == "pw " and env["CHURN_DOTENV"] == "none"
    assert "KAFKA_SSL_CHECK_HOSTNAME" not in env and "CONSUMER_INSTANCE_ID" not in env
    assert client_option_args(settings) == ["-X", "send.buffer.bytes=9"]


def test_the_error_line_masks_a_secret_it_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    REDACTOR.add(secret)

    def body() -> int:
        raise ConfigError(f"the broker refused {secret}")

    assert run(body) == EXIT_CONFIG
    assert capsys.readouterr().err == "Error: the broker refused ***\n"


# -- at the edge: one line, the right exit code, before anything connects


@pytest.mark.parametrize("command", CONNECTING, ids=[c.name for c in CONNECTING])
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-X", "security.protocol"], "argument -X: 'security.protocol' is not key=value"),
        (["--command-config", "/no/such/client.properties"], "cannot read '/no/such/client.properties'"),
    ],
)
def test_a_malformed_option_or_missing_file_exits_64_in_one_line(
    command: Command, args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        command.main(args)
    assert stopped.value.code == EXIT_USAGE
    assert named in capsys.readouterr().err.strip().splitlines()[-1]


def test_an_unknown_key_exits_with_the_settings_code_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    settings_command = next(c for c in COMMANDS if c.module == "churnstream.cli.settings")
    code = settings_command.main(["-X", "fetch.max.wait.ms=5"])
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "fetch.max.wait.ms is not a supported client property" in err[0]
    assert "Traceback" not in err[0]


def test_kafka_s_tools_get_the_same_settings_back_as_a_properties_file() -> None:
    """make kafka-tool writes the settings as Java properties; read back, they are the same settings."""
    variables = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "churn",
        "KAFKA_SASL_PASSWORD": 'p"a\\ss=w:rd ',
        "KAFKA_SSL_CAFILE": "/etc/ca.pem",
    }
    settings = load_settings(Path("/nonexistent.env"), variables)
    text = java_properties(settings)
    assert "ssl.truststore.type=PEM" in text
    back = translate(parse_properties(text, "tool.properties")).settings
    assert back == {**variables, "KAFKA_SSL_CHECK_HOSTNAME": "true"}  # the password exactly, space included


def test_mutual_tls_goes_to_the_tools_as_a_pem_keystore() -> None:
    variables = {
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": "/etc/ca.pem",
        "KAFKA_SSL_CERTFILE": "/etc/client.pem",
        "KAFKA_SSL_KEYFILE": "/etc/client.key",
        "KAFKA_SSL_CHECK_HOSTNAME": "false",
    }
    text = java_properties(load_settings(Path("/nonexistent.env"), variables), keystore="/tmp/x/keystore.pem")
    assert "ssl.keystore.type=PEM\nssl.keystore.location=/tmp/x/keystore.pem\n" in text
    assert "ssl.endpoint.identification.algorithm=\n" in text
    assert "sasl" not in text
