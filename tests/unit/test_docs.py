"""The docs cannot drift from the code: the generated pages are current, the troubleshooting page covers
every exit code, the configuration reference every setting with its default, and every link resolves."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from dotenv import dotenv_values

from churnstream.cli import configuration, troubleshooting
from churnstream.cli.docs import stale_files
from churnstream.cli.registry import COMMANDS
from churnstream.errors import EXIT_CODES
from churnstream.settings import ALL_VARIABLES, ENV_DOTENV, settings_from
from tests.helpers import ROOT

CONFIGURATION = ROOT / "docs" / "reference" / "configuration.md"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
ENV_EXAMPLE = ROOT / ".env.example"
# Folders the set-up and the runs fill: not the project's docs.
NOT_DOCS = {".venv", "broker", "results", ".run", ".pytest_cache", ".ruff_cache", ".checkpoints"}


def test_the_committed_generated_files_are_current() -> None:
    """The CLI, configuration and troubleshooting references, KAFKA_README's exit codes, the metrics table,
    the JSON Schemas and the event schema's page are built from code and the schema file: ``make docs``."""
    assert [str(p.relative_to(ROOT)) for p in stale_files()] == []


def test_every_exit_code_has_causes_checks_and_fixes() -> None:
    assert set(troubleshooting.REMEDIES) == set(EXIT_CODES)
    for code, remedies in troubleshooting.REMEDIES.items():
        assert remedies, code
        for remedy in remedies:
            assert remedy.cause.strip() and remedy.check.strip() and remedy.fix.strip(), (code, remedy)


def test_a_code_without_causes_stops_make_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(troubleshooting, "REMEDIES", {k: v for k, v in troubleshooting.REMEDIES.items() if k != 7})
    with pytest.raises(ValueError, match=r"exit code\(s\) \[7\] have no section"):
        troubleshooting.troubleshooting_page()


def test_the_troubleshooting_page_has_a_section_per_exit_code() -> None:
    headings = re.findall(r"^## Exit (\d+)$", TROUBLESHOOTING.read_text(), re.MULTILINE)
    assert sorted(int(code) for code in headings) == sorted(EXIT_CODES)


def configuration_rows() -> dict[str, list[str]]:
    """The committed reference's table: variable -> its cells."""
    rows: dict[str, list[str]] = {}
    for line in CONFIGURATION.read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if cells and (name := re.fullmatch(r"`([A-Z_]+)`", cells[0])):
            rows[name.group(1)] = cells
    return rows


def test_the_configuration_reference_lists_every_setting_with_its_default() -> None:
    """Every variable the code reads and every key of .env.example has a row, whose default is the one
    ``config.py`` prints with nothing set."""
    rows = configuration_rows()
    example = dotenv_values(ENV_EXAMPLE)
    assert set(rows) == {*ALL_VARIABLES, ENV_DOTENV, *example}
    for variable, cells in rows.items():
        assert cells[2] == configuration.default(variable), variable


def test_env_example_holds_every_variable_at_its_default() -> None:
    """Copying .env.example to .env changes nothing: each value it gives is the default (or empty)."""
    example = {key: value or "" for key, value in dotenv_values(ENV_EXAMPLE).items()}
    assert set(example) == set(ALL_VARIABLES)
    assert settings_from(example) == settings_from({})
    for variable, value in example.items():
        if value:
            assert configuration.default(variable) == f"`{value}`", variable


def test_a_variable_without_a_meaning_stops_make_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(configuration.NOTES, "METRICS_PORT")
    with pytest.raises(KeyError, match="METRICS_PORT"):
        configuration.configuration_page()


def test_a_flag_is_listed_for_the_variable_it_stands_in_for() -> None:
    rows = configuration_rows()
    assert "`--wait-for-topic` (consumer)" in rows["CONSUMER_WAIT_FOR_TOPIC_S"][1]
    assert "`--metrics-port` (producer)" in rows["PRODUCER_METRICS_PORT"][1]
    assert "`-X security.protocol`" in rows["KAFKA_SECURITY_PROTOCOL"][1]
    # a help that mentions a variable without standing in for it (--shadow-model writes to a topic) is not one
    assert "--shadow-model" not in rows["KAFKA_TOPIC_PREDICTIONS_SHADOW"][1]


# -- links


def markdown_files() -> list[Path]:
    return sorted(path for path in ROOT.rglob("*.md") if not NOT_DOCS & set(path.relative_to(ROOT).parts[:-1]))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation out, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (heading := re.match(r"#{1,6} (.+)", line)):
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_of_a_page_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not checked offline
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert broken == []


# -- the ACL tables: what the local SASL_SSL broker grants is what both pages list


def acl_tables(page: Path) -> list[set[tuple[str, str, str, str]]]:
    """Each ``| Resource | Name | Pattern | Operations | Why |`` table of a page, as (resource, name,
    pattern, operation) grants, lists in a cell expanded (``topic`` x three prefixes)."""
    tables: list[set[tuple[str, str, str, str]]] = []
    current: set[tuple[str, str, str, str]] | None = None
    for line in page.read_text().splitlines():
        if line.startswith("| Resource | Name | Pattern | Operations |"):
            current = set()
            tables.append(current)
        elif current is not None and line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if set(cells[0]) <= {"-", " "}:
                continue
            resources = [r.strip() for r in cells[0].split(",")]
            names = [n.strip(" `") for n in cells[1].split(",")]
            operations = [o.strip() for o in cells[3].split(",")]
            current |= {(r, n, cells[2], o) for r in resources for n in names for o in operations}
        else:
            current = None
    return tables


def granted(acls: list) -> set[tuple[str, str, str, str]]:  # kafka.admin.ACL
    words = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactional id"}
    operations = {"DESCRIBE_CONFIGS": "DescribeConfigs"}
    return {
        (
            words[acl.resource_pattern.resource_type.name],
            acl.resource_pattern.resource_name,
            acl.resource_pattern.pattern_type.name.lower(),
            operations.get(acl.operation.name, acl.operation.name.capitalize()),
        )
        for acl in acls
    }


@pytest.mark.parametrize("page", ["KAFKA_README.md", "docs/howto/secure-cluster.md"])
def test_the_acl_tables_list_what_the_local_secure_broker_grants(page: str) -> None:
    from churnstream.localkafka.acl import harness_acls, pipeline_acls, replay_acls  # noqa: PLC0415
    from churnstream.localkafka.cluster import ledger_topic  # noqa: PLC0415
    from churnstream.replay import replay_transactional_id  # noqa: PLC0415
    from churnstream.settings import Settings  # noqa: PLC0415

    s = Settings()
    names = (s.topic_raw, s.topic_predictions, s.topic_deadletter, s.consumer_group)
    pipeline = pipeline_acls("churn", *names, shadow_topic=s.topic_predictions_shadow) + harness_acls("churn", *names)
    replay = replay_acls("churn-replay", s.topic_raw, s.topic_deadletter, ledger_topic(s), replay_transactional_id(s))
    assert acl_tables(ROOT / page) == [granted(pipeline), granted(replay)]


def test_a_page_that_lists_the_console_scripts_lists_them_all() -> None:
    """A list of four or more console scripts in a paragraph is meant as the list: it must not miss one
    (the one list kept by code is the generated table of docs/reference/cli.md)."""
    scripts = {command.console_script for command in COMMANDS if command.console_script}
    incomplete = []
    for page in markdown_files():
        if page.name == "CHANGELOG.md" or "benchmarks" in page.parts:
            continue  # history: what the release of its day shipped
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # a walkthrough's commands are no list
        for paragraph in prose.split("\n\n"):
            named = set(re.findall(r"\bchurn-[a-z-]+\b", paragraph)) & scripts
            if len(named) >= 4 and named != scripts:
                incomplete.append(f"{page.relative_to(ROOT)}: {sorted(named)} lacks {sorted(scripts - named)}")
    assert incomplete == []


def test_every_test_file_a_page_or_a_deploy_file_cites_exists() -> None:
    citing = [
        *markdown_files(),
        *(ROOT / "deploy").rglob("*.*"),
        ROOT / "Dockerfile",
        ROOT / "docker-compose.yml",
        *(ROOT / "churnstream").rglob("*.py"),
    ]
    missing = {
        f"{path.relative_to(ROOT)} cites {cited}"
        for path in citing
        if "benchmarks" not in path.parts and path.name != "CHANGELOG.md"  # history names the files of its day
        for cited in re.findall(r"\btests/(?:unit|integration)/[a-z_]+\.py\b", path.read_text())
        if not (ROOT / cited).is_file()
    }
    assert missing == set()
