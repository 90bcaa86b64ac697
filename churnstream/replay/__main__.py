"""``python -m churnstream.replay``: the CLI is churnstream.cli.replay."""

from churnstream.cli.replay import main

raise SystemExit(main())
