"""Dead-letter replay: selected records go back to the raw topic byte for byte, each at most once."""

from __future__ import annotations

import threading
import time

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from churnstream import replay as replay_module
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import REPLAY_HEADER_OF, dead_letter_headers
from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.topics import ensure_topics, ledger_topic
from churnstream.replay import ReplaySummary, Selection, replay
from churnstream.settings import Settings
from tests.helpers import read_all_records, run_module


def _dead_letters(settings: Settings) -> list[tuple[bytes | None, bytes | None, str]]:
    """Write dead letters straight to the dead-letter topic, as the consumer would."""
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw, settings.topic_deadletter], partitions=1)
    finally:
        admin.close()
    letters = [
        (b"c1", b'{"Contract": "Forever"}', "validate", "Contract='Forever' is not a known category"),
        (b"c2", b"", "decode", "value is empty; a JSON object is required"),
        (b"c0", None, "decode", "value is null (a tombstone); a JSON object is required"),
        (b"c3", b'{"Contract": "Forever", "x": 1}', "validate", "Contract='Forever' is not a known category"),
    ]
    producer = make_producer(settings)
    try:
        for offset, (key, value, stage, reason) in enumerate(letters):
            headers = dead_letter_headers(
                stage=stage, reason=reason, error_class="E", source_topic=settings.topic_raw, source_partition=0,
                source_offset=offset, failed_ts=utc_now_iso(), model_version="m",
                source_headers=[("trace", b"t-%d" % offset)],
            )  # fmt: skip
            producer.send(settings.topic_deadletter, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()
    return [(key, value, stage) for key, value, stage, _ in letters]


def test_replay_sends_the_original_bytes_once(pipeline_settings: Settings, pipeline_env: dict[str, str]) -> None:
    settings = pipeline_settings
    letters = _dead_letters(settings)

    summary = replay(settings, Selection(reason_contains="Contract"), dry_run=True)
    assert summary == ReplaySummary(dead_letters=4, matching=2, already_replayed=0, unsendable=0, to_replay=2)
    assert read_all_records(settings, settings.topic_raw) == []

    summary = replay(settings, Selection(reason_contains="Contract"))
    assert summary.replayed == 2
    raw = read_all_records(settings, settings.topic_raw)
    assert [(r.key, r.value) for r in raw] == [(k, v) for k, v, _ in letters if k in (b"c1", b"c3")]
    assert [dict(r.headers)[REPLAY_HEADER_OF].split(b":", 1)[1] for r in raw] == [b"0:0", b"0:3"]
    assert [dict(r.headers)["trace"] for r in raw] == [b"t-0", b"t-3"]  # the raw record's own headers, back

    again = replay(settings, Selection(reason_contains="Contract"))
    assert again.replayed == 0 and again.already_replayed == 2
    everything = replay(settings, Selection())
    assert everything.replayed == 2  # the two decode failures, the tombstone kept as a tombstone
    raw = read_all_records(settings, settings.topic_raw)
    assert len(raw) == 4
    assert sorted(((r.key, r.value) for r in raw), key=repr) == sorted(((k, v) for k, v, _ in letters), key=repr)


def test_replay_command_line(pipeline_env: dict[str, str], pipeline_settings: Settings) -> None:
    _dead_letters(pipeline_settings)
    first = run_module("churnstream.replay", ["--stage", "decode"], env=pipeline_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "4 dead letters, 2 matching, 0 already replayed, replayed 2"
    second = run_module("churnstream.replay", ["--stage", "decode"], env=pipeline_env)
    assert second.stdout.strip() == "4 dead letters, 2 matching, 2 already replayed, replayed 0"
    usage = run_module("churnstream.replay", ["--from-offset", "3"], env=pipeline_env)
    assert usage.returncode == 64


def test_two_replays_at_once_never_send_a_dead_letter_twice(
    pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst interleaving, forced: replay B reads the ledger (empty) after its
    init_transactions(), then replay A runs from start to end, then B goes on. A's init fences B,
    so B sends nothing and says why; without the fence B would send every record a second time."""
    settings = pipeline_settings
    letters = _dead_letters(settings)
    original_read = replay_module._replayed_keys
    b_has_read_the_ledger = threading.Event()
    a_is_done = threading.Event()

    b_ledger_reads = []

    def read_and_pause_b(settings: Settings, ledger: str) -> set[bytes]:
        rows = original_read(settings, ledger)
        if threading.current_thread().name == "replay-b":
            b_ledger_reads.append(len(rows))
            if len(b_ledger_reads) == 2:  # the read after init_transactions (the first only checks for work)
                b_has_read_the_ledger.set()
                a_is_done.wait(timeout=30)
        return rows

    monkeypatch.setattr(replay_module, "_replayed_keys", read_and_pause_b)
    b_outcome: list[object] = []

    def replay_b() -> None:
        try:
            b_outcome.append(replay(settings, Selection()))
        except Exception as exc:  # fenced by A: allowed; a second send is not
            b_outcome.append(exc)

    b = threading.Thread(target=replay_b, name="replay-b", daemon=True)
    b.start()
    try:
        assert b_has_read_the_ledger.wait(timeout=30), f"B never read the ledger: {b_outcome}"
        a_summary = replay(settings, Selection())
    finally:
        a_is_done.set()
    b.join(timeout=60)
    assert not b.is_alive(), "replay B hung after being fenced"
    assert a_summary.replayed == len(letters)
    keys = sorted(r.key for r in read_all_records(settings, settings.topic_raw))
    assert keys == sorted(k for k, _, _ in letters), f"replayed twice: {keys}; B ended with {b_outcome}"
    (b_result,) = b_outcome
    assert isinstance(b_result, PipelineError) and "another replay took over" in str(b_result), b_result


# --------------------------------------------------------------------- issue 13: the gaps in "at most once"


def _delete_and_wait(settings: Settings, topic: str) -> None:
    admin = make_admin(settings)
    try:
        admin.delete_topics([topic])
        deadline = time.monotonic() + 30
        while topic in admin.list_topics():
            assert time.monotonic() < deadline, f"{topic} was not deleted"
            time.sleep(0.2)
    finally:
        admin.close()


def test_a_dead_letter_topic_created_again_has_a_ledger_of_its_own(pipeline_settings: Settings) -> None:
    """Before: the ledger said "partition:offset"; a recreated dead-letter topic's new dead letters,
    at the same offsets, looked replayed and were never sent."""
    settings = pipeline_settings
    _dead_letters(settings)
    assert replay(settings, Selection()).replayed == 4
    _delete_and_wait(settings, settings.topic_deadletter)
    _dead_letters(settings)  # the same offsets, in a new topic
    again = replay(settings, Selection())
    assert (again.already_replayed, again.replayed) == (0, 4)


def test_the_ledger_is_compacted_and_never_expires(pipeline_settings: Settings) -> None:
    """Before: the broker's defaults (delete after 7 days), so a ledger could expire before its dead
    letters and let them be replayed a second time."""
    settings = pipeline_settings
    _dead_letters(settings)
    replay(settings, Selection(), dry_run=True)
    admin = make_admin(settings)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, ledger_topic(settings), ["cleanup.policy", "retention.ms"])
        (described,) = admin.describe_configs([resource]).values()
        entries = described[ledger_topic(settings)]
    finally:
        admin.close()
    assert (entries["cleanup.policy"]["value"], entries["retention.ms"]["value"]) == ("compact", "-1")


def test_a_dead_letter_of_a_record_without_key_or_value_is_not_sent_back_as_a_keyed_tombstone(
    pipeline_settings: Settings,
) -> None:
    """The consumer marks such a dead letter (kafka-python cannot send both null): before, replay
    sent it back with key b"" and no value, a tombstone the raw record never was."""
    settings = pipeline_settings
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw, settings.topic_deadletter], partitions=1)
    finally:
        admin.close()
    headers = dead_letter_headers(
        stage="decode", reason="value is null (a tombstone)", error_class="E", source_topic=settings.topic_raw,
        source_partition=0, source_offset=0, failed_ts=utc_now_iso(), model_version="m", key_absent=True,
    )  # fmt: skip
    producer = make_producer(settings)
    try:
        producer.send(settings.topic_deadletter, key=b"", value=None, headers=headers).get(timeout=30)
    finally:
        producer.close()
    summary = replay(settings, Selection())
    assert (summary.unsendable, summary.replayed) == (1, 0)
    assert read_all_records(settings, settings.topic_raw) == []


def test_replay_bounds_its_transaction_so_a_killed_replay_stalls_readers_briefly() -> None:
    assert replay_module.TRANSACTION_TIMEOUT_MS <= 15_000
    assert replay_module.REQUEST_TIMEOUT_MS < replay_module.DELIVERY_TIMEOUT_MS
    assert replay_module.FLUSH_TIMEOUT_S < replay_module.CALL_TIMEOUT_S <= replay_module.TRANSACTION_TIMEOUT_MS / 1000


def test_a_missing_dead_letter_topic_is_exit_7_not_an_empty_ledger(pipeline_env: dict[str, str]) -> None:
    result = run_module("churnstream.replay", ["--dry-run"], env=pipeline_env)
    assert result.returncode == 7
    assert "do not exist" in result.stderr.strip().splitlines()[-1]
