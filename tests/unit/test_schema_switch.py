"""A promotion to a model of another event schema, between batches: the decided policy is to switch.

The model carries its contract (the card embeds its schema), so the consumer's validation follows the
model it serves: from the batch after the swap, events are validated against the new schema, events of
the old shape become dead letters (replayable once a producer sends them anew), and one warning line says
so. Refusing such a promotion would leave a telco unable to add a column without stopping its consumers.
"""

from __future__ import annotations

import logging

import orjson
import pytest

from churnstream.consumer.models import follow_store
from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.events import encode_event, load_contract
from churnstream.contract.outputs import DeadLetterInfo, decode_prediction
from churnstream.ml.importing import import_model
from churnstream.ml.model import load_model
from churnstream.ml.store import ModelStore
from tests.helpers import current_card_path, current_model_path, make_rows, telco_event
from tests.unit.test_importing import SCHEMA, make_data, train_in_a_notebook


@pytest.fixture(scope="module")
def two_schemas(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelStore, str, str]:
    """A store with the Telco model (current) and a mobile operator's model of another schema."""
    folder = tmp_path_factory.mktemp("switch")
    pickle_path, holdout = train_in_a_notebook(folder, 800, 500, seed=4)
    store = ModelStore(folder / "models")
    telco = store.add(current_model_path().read_bytes(), orjson.loads(current_card_path().read_bytes()))
    store.promote(telco)
    mobile = import_model(pickle_path, load_contract(SCHEMA), holdout, "churned", name="mobile")
    store.add(mobile.model_bytes, mobile.card, holdout=mobile.holdout)
    return store, telco, mobile.version


def test_a_promotion_to_another_schema_switches_validation_between_batches(
    two_schemas: tuple[ModelStore, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    store, telco, mobile = two_schemas
    watcher = follow_store(store, load_model)
    assert watcher.model.version == telco
    telco_events = [
        RawRecord("raw", 0, i, b"k", encode_event(telco_event(row, f"t-{i}"))) for i, row in enumerate(make_rows(5))
    ]
    subscriber = {**make_data.subscribers(1, seed=9)[0]}
    del subscriber["churned"]
    mobile_event = load_contract(SCHEMA).event_from_row(subscriber, event_id="m-1", event_ts="2026-12-04T10:00:00.000Z")
    mobile_events = [RawRecord("raw", 0, 5, b"k", encode_event(mobile_event))]

    before = score_batch([*telco_events, *mobile_events], watcher.check())
    assert before.scored == 5 and [d.offset for d in before.dead_letters] == [5]
    store.promote(mobile)
    with caplog.at_level(logging.WARNING):
        model = watcher.check()
    assert model.version == mobile
    after = score_batch([*telco_events, *mobile_events], model)
    assert [decode_prediction(p.value).key_field for p in after.predictions] == ["subscriber_id"]
    reasons = {DeadLetterInfo.from_headers(d.headers).reason for d in after.dead_letters}
    assert len(after.dead_letters) == 5 and all(r.startswith("subscriber_id is missing") for r in reasons)
    switch = [r.message for r in caplog.records if "carries another event schema" in r.message]
    assert len(switch) == 1 and "Mobile subscriber churn event" in switch[0]
