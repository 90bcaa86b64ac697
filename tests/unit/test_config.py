from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import config
from churnstream.errors import EXIT_CONFIG, ConfigError
from churnstream.settings import PROJECT_ROOT, Secret, settings_from


def test_defaults_match_the_documented_contract() -> None:
    settings = settings_from({})
    assert settings.bootstrap_servers == "localhost:29092"
    assert settings.topic_raw == "telco-raw-customers"
    assert settings.topic_predictions == "telco-churn-predictions"
    assert settings.topic_deadletter == "telco-deadletter"
    assert settings.consumer_group == "telco-churn-consumer-group"
    assert settings.topic_partitions == 6
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.topic_predictions_shadow == "telco-churn-predictions-shadow"
    assert settings.model_store == PROJECT_ROOT / "models"
    assert settings.model_path is None  # follow the store's current version


def test_settings_are_frozen() -> None:
    settings = settings_from({})
    with pytest.raises(AttributeError):
        settings.topic_raw = "other"  # type: ignore[misc]


def test_relative_paths_are_relative_to_the_project(tmp_path: Path) -> None:
    settings = settings_from(
        {"MODEL_PATH": "models/v2.pkl", "MODEL_STORE": "other-store", "DATA_PATH": str(tmp_path / "x.csv")}
    )
    assert settings.model_path == PROJECT_ROOT / "models" / "v2.pkl"
    assert settings.model_store == PROJECT_ROOT / "other-store"
    assert settings_from({"MODEL_PATH": "  "}).model_path is None  # empty: follow the store
    assert settings.data_path == tmp_path / "x.csv"


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("KAFKA_TOPIC_PARTITIONS", "six", "expected a whole number from 1 to 1000"),
        ("KAFKA_TOPIC_PARTITIONS", "0", "expected a whole number from 1 to 1000"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS", "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "expected host:port[,host:port...]"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost:99999", "expected host:port[,host:port...]"),
        ("KAFKA_TOPIC_RAW", "bad topic!", "a topic name is 1-249 characters"),
        ("KAFKA_TOPIC_PREDICTIONS_SHADOW", "bad topic!", "a topic name is 1-249 characters"),
        ("KAFKA_CONSUMER_GROUP", "bad group!", "a group name is 1-249 characters"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI", "expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        ("METRICS_ADDRESS", "127.0.0.1:9400", "an IP address of this host (127.0.0.1, ::1) or a host name"),
        ("CONSUMER_WAIT_FOR_TOPIC_S", "-1", "expected a number of seconds from 0 to 86400"),
        ("CONSUMER_WAIT_FOR_TOPIC_S", "a minute", "expected a number of seconds from 0 to 86400"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(variable: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({variable: value})
    message = str(caught.value)
    assert message.startswith(f"{variable}={value!r} is not valid: ")
    assert allowed in message


def test_the_metrics_address_is_every_interface_unless_one_is_named() -> None:
    assert settings_from({}).metrics_address == ""  # the Prometheus exporters' convention
    assert settings_from({"METRICS_ADDRESS": " [::1] "}).metrics_address == "::1"
    assert settings_from({"METRICS_ADDRESS": "metrics.internal"}).describe()["METRICS_ADDRESS"] == "metrics.internal"


def test_sasl_needs_mechanism_user_and_password() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        settings_from({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ConfigError, match="needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        settings_from({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"})


def test_the_password_never_shows() -> None:
    password = "hunter2-very-secret"
    settings = settings_from(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "churn",
            "KAFKA_SASL_PASSWORD": password,
        }
    )
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.sasl_password == Secret(password)
    assert settings.sasl_password is not None and settings.sasl_password.reveal() == password
    for text in (repr(settings), str(settings), repr(settings.sasl_password), str(settings.describe())):
        assert password not in text


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("KAFKA_TOPIC_RAW=from-dotenv\nKAFKA_CONSUMER_GROUP=group-from-dotenv\n")
    monkeypatch.delenv("KAFKA_TOPIC_RAW", raising=False)
    monkeypatch.setenv("KAFKA_CONSUMER_GROUP", "group-from-env")
    settings = config.load_settings(dotenv)
    assert settings.topic_raw == "from-dotenv"
    assert settings.consumer_group == "group-from-env"


def test_churn_dotenv_is_relative_to_the_folder_the_command_starts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlike the paths in the settings (relative to the project folder): docs/reference/configuration.md."""
    (tmp_path / "mine.env").write_text("KAFKA_TOPIC_RAW=from-cwd\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_DOTENV", "mine.env")
    monkeypatch.delenv("KAFKA_TOPIC_RAW", raising=False)
    assert config.load_settings().topic_raw == "from-cwd"


def test_every_variable_is_documented_in_env_example() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text()
    for variable in config.ALL_VARIABLES:
        assert f"{variable}=" in example, f"{variable} is not in .env.example"


def test_config_script_reports_a_bad_dotenv_in_one_line(tmp_path: Path) -> None:
    dotenv = tmp_path / "bad.env"
    dotenv.write_text("KAFKA_TOPIC_PARTITIONS=lots\nKAFKA_SASL_PASSWORD=s3cr3t-pw\n")
    env = {"PATH": "/usr/bin:/bin", "CHURN_DOTENV": str(dotenv)}
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "config.py")], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.strip().splitlines() == [
        "Error: KAFKA_TOPIC_PARTITIONS='lots' is not valid: expected a whole number from 1 to 1000"
    ]
    assert "s3cr3t-pw" not in result.stdout + result.stderr


def test_replication_factor_unset_means_chosen_from_the_cluster() -> None:
    assert settings_from({}).replication_factor is None
    assert settings_from({"KAFKA_REPLICATION_FACTOR": " "}).replication_factor is None
    assert settings_from({}).describe()["KAFKA_REPLICATION_FACTOR"] == ""
    assert settings_from({"KAFKA_REPLICATION_FACTOR": "3"}).replication_factor == 3
    with pytest.raises(ConfigError, match=r"^KAFKA_REPLICATION_FACTOR='0' is not valid: expected a whole number"):
        settings_from({"KAFKA_REPLICATION_FACTOR": "0"})
