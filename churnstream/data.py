"""``python -m churnstream.data``: kept so the documented command works; the code is churnstream.cli.data."""

from churnstream.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main())
