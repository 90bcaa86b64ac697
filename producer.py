"""Send Telco customer rows to Kafka as events: a steady stream, or a resumable batch load.

``python producer.py --help``; the same command as the console script in churnstream.cli.registry.
The code is churnstream.cli.producer (a thin CLI) over the package.
"""

from churnstream.cli.producer import main

if __name__ == "__main__":
    raise SystemExit(main())
