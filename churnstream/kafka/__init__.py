"""Everything that talks to Kafka: client factories (``clients``), why a call failed (``diagnosis``),
topics (``topics``), the consumer group (``group``), broker outages (``outage``) and reading a topic
to its end (``reading``). kafka-python does the retrying; nothing here loops around the client."""
