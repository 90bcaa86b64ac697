"""matplotlib for the project's pictures (the harness's plot, the model's report): the ``report`` extra.

matplotlib is not a runtime need (``pip install .`` leaves it out), so it is imported only when a
picture is drawn, with the Agg backend (files only: no display on servers and CI), and its absence
is one line that says how to get it.
"""

from __future__ import annotations

from typing import Any

from churnstream.errors import ConfigError

REPORT_EXTRA_HINT = "pictures need matplotlib: pip install 'telco-churn-stream[report]' (make installs it)"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; ConfigError (one line, the extra to install) when it is missing."""
    try:
        import matplotlib  # noqa: PLC0415
    except ImportError:
        raise ConfigError(REPORT_EXTRA_HINT) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt
