"""The snippet of docs/howto/read-predictions.md (examples/read_predictions.py) against the real broker: it
reads what the real consumer published, every new field decoded, and nothing of an aborted transaction."""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaProducer

from churnstream.contract.outputs import REASON_FIELDS, decode_prediction
from churnstream.ml.evaluation import BAND_RULE, LOWEST_BAND
from churnstream.settings import Settings
from examples.read_predictions import read_predictions
from tests.helpers import read_all_records, run_script

EVENTS = 40


def test_the_snippet_reads_each_committed_prediction_once_with_its_band_and_reasons(
    pipeline_env: dict[str, str], pipeline_settings: Settings, unique: Callable[[str], str]
) -> None:
    produced = run_script("producer.py", ["--mode", "batch", "--limit", str(EVENTS)], pipeline_env)
    assert produced.returncode == 0, produced.stderr
    consumed = run_script("consumer.py", ["--mode", "batch"], pipeline_env)
    assert consumed.returncode == 0, consumed.stderr
    topic = pipeline_settings.topic_predictions
    # What a read_uncommitted reader would see too: a batch written and then aborted.
    aborted = KafkaProducer(
        bootstrap_servers=pipeline_settings.bootstrap_servers.split(","), transactional_id=unique("txn")
    )
    try:
        aborted.init_transactions()
        aborted.begin_transaction()
        aborted.send(topic, key=b"0000-ABORTED", value=b'{"customerID": "0000-ABORTED"}')
        aborted.flush()
        aborted.abort_transaction()
    finally:
        aborted.close()

    read = list(read_predictions(pipeline_settings.bootstrap_servers, topic, group_id=unique("reader"), idle_s=5))

    published = [decode_prediction(r.value) for r in read_all_records(pipeline_settings, topic)]
    assert len(published) == EVENTS
    assert sorted(p["customerID"] for p in read) == sorted(p.key for p in published)
    bands = {name for name, _ in BAND_RULE} | {LOWEST_BAND}
    for prediction in read:
        assert prediction["format_version"] == 2
        assert prediction["risk_band"] in bands
        assert len(prediction["reasons"]) <= 3  # only features that raise the risk: a low one may have none
        assert all(tuple(reason) == REASON_FIELDS for reason in prediction["reasons"])
    assert any(prediction["reasons"] for prediction in read)
