"""Score churn events from Kafka in micro-batches; dead-letter what cannot be scored.

``python consumer.py --help``; the same command as the console script in churnstream.cli.registry.
The code is churnstream.cli.consumer (a thin CLI) over the package.
"""

from churnstream.cli.consumer import main

if __name__ == "__main__":
    raise SystemExit(main())
