"""``python -m churnstream.broker``: kept so the documented command works; the code is churnstream.cli.kafka."""

from churnstream.cli.kafka import main

if __name__ == "__main__":
    raise SystemExit(main())
