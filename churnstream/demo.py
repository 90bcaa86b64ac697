"""A smoke run through the real broker: send a few customers, read them back, score them.

``python -m churnstream.demo`` (``make demo``). Uses run-unique topics so it never mixes with
other runs, and deletes nothing: the topics stay for you to inspect with Kafka's tools.
"""

from __future__ import annotations

import logging
import random
import time
import uuid

from churnstream.cli import add_logging_options, make_parser, run, setup_logging
from churnstream.data import read_rows
from churnstream.events import decode_value, encode_event, row_to_event, utc_now_iso, validate_event
from churnstream.kafka_io import (
    ensure_topics,
    kafka_errors_translated,
    make_admin,
    make_consumer,
    make_producer,
)
from churnstream.model import load_model
from config import load_settings

logger = logging.getLogger("churnstream.demo")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m churnstream.demo", "Send a few customers through Kafka and print their churn scores."
    )
    parser.add_argument("--events", type=int, default=5, help="how many customers to send (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="which customers (random seed)")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        settings = load_settings()
        model = load_model(settings.model_path)
        rows = [row for _, row in read_rows(settings.data_path)]
        chosen = random.Random(args.seed).sample(rows, args.events)
        topic = f"{settings.topic_raw}-demo-{uuid.uuid4().hex[:8]}"
        admin = make_admin(settings)
        try:
            ensure_topics(admin, settings, [topic], partitions=1)
        finally:
            admin.close()
        producer = make_producer(settings)
        try:
            for index, row in enumerate(chosen):
                event = row_to_event(row, event_id=f"demo-{index}", event_ts=utc_now_iso())
                producer.send(topic, key=event["customerID"].encode(), value=encode_event(event))
            with kafka_errors_translated(settings):
                producer.flush(timeout=30)
        finally:
            producer.close()
        consumer = make_consumer(settings, topic, auto_offset_reset="earliest", enable_auto_commit=False)
        received = []
        deadline = time.monotonic() + 30
        try:
            while len(received) < len(chosen) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    received.extend(validate_event(decode_value(r.value)) for r in records)
        finally:
            consumer.close()
        probabilities = model.predict_proba([event.features for event in received])
        print(f"{len(received)} events through {settings.bootstrap_servers} topic {topic}, model {model.version}:")
        for event, probability in zip(received, probabilities, strict=True):
            label = "Yes" if probability >= model.threshold else "No"
            print(f"  {event.customer_id}: churn_probability={probability:.3f} prediction={label}")
        return 0 if len(received) == len(chosen) else 1

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())
