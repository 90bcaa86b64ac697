"""Run producer and consumer against a real broker and measure them from outside; see churnstream.harness.

``python test_pipeline.py --help``; the same command as the console script in churnstream.cli.registry.
The code is churnstream.cli.pipeline (a thin CLI) over the package.
"""

from churnstream.cli.pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
