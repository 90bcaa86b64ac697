"""Read the pipeline's predictions from your own Python code: a read_committed consumer, nothing more.

Run it beside a consumer (python examples/read_predictions.py); docs/howto/read-predictions.md explains
each line, and tests/integration/test_read_predictions.py runs it against a real broker.
"""

import json
import os
from collections.abc import Iterator

from kafka import KafkaConsumer


def read_predictions(
    bootstrap_servers: str = "localhost:29092",
    topic: str = "telco-churn-predictions",
    group_id: str = "retention-app",
    idle_s: float = 10.0,
) -> Iterator[dict]:
    """Each prediction as a dict, oldest first, until none has come for ``idle_s`` seconds."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers.split(","),
        group_id=group_id,  # your own group: it remembers how far you have read
        isolation_level="read_committed",  # committed batches only: each event's prediction once
        auto_offset_reset="earliest",  # a new group starts at the topic's beginning
        consumer_timeout_ms=int(idle_s * 1000),  # end the loop after this long without a record
    )
    try:
        consumer.partitions_for_topic(topic)  # metadata before the first poll (docs/notes/kafka-python-3.0.12.md)
        for record in consumer:
            yield json.loads(record.value)
    finally:
        consumer.close()


if __name__ == "__main__":
    # The pipeline's variable names, from the environment only (this plain script reads no .env).
    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:29092")
    for prediction in read_predictions(servers, os.environ.get("KAFKA_TOPIC_PREDICTIONS", "telco-churn-predictions")):
        key_field = next(iter(prediction))  # the event schema's key: customerID for the Telco data
        reasons = ", ".join(f"{r['feature']}={r['value']}" for r in prediction["reasons"] or [])
        print(prediction[key_field], prediction["risk_band"], f"{prediction['churn_probability']:.3f}", reasons)
