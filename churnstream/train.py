"""``python -m churnstream.train``: kept so the documented command works; the code is churnstream.cli.train."""

from churnstream.cli.train import main

if __name__ == "__main__":
    raise SystemExit(main())
