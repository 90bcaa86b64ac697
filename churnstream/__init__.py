"""telco-churn-stream: the small library behind producer.py, consumer.py and test_pipeline.py.

Pure functions (events, validation, scoring) live apart from the Kafka wiring, so each can be
tested on its own; the top-level scripts are thin shells over this package.
"""
