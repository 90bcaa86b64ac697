"""Show the settings the pipeline would use, with secrets masked: ``python config.py``.

The settings themselves live in churnstream.settings (the one place that reads the environment
and ``.env``); this script re-exports them, so ``from config import load_settings`` keeps working.
"""

from __future__ import annotations

from churnstream.cli.settings import main
from churnstream.settings import *  # noqa: F403 - re-exporting the settings is this module's purpose

if __name__ == "__main__":
    raise SystemExit(main())
