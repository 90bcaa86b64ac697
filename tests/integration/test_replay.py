"""Dead-letter replay: selected records go back to the raw topic byte for byte, each at most once."""

from __future__ import annotations

import threading

import pytest

from churnstream import replay as replay_module
from churnstream.contract.outputs import HEADER_REASON, HEADER_STAGE, REPLAY_HEADER_OF
from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.topics import ensure_topics
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
        for key, value, stage, reason in letters:
            headers = [(HEADER_STAGE, stage.encode()), (HEADER_REASON, reason.encode())]
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
    assert all(dict(r.headers)[REPLAY_HEADER_OF] in (b"0:0", b"0:3") for r in raw)

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
