"""The producer, one job per module: ``rows`` (CSV -> prepared events), ``pacing``, ``delivery``,
``checkpoint``, ``loops`` (streaming and batch, over any sender and clock), ``summary``, and ``run``
(the wiring to the real broker)."""
