"""The validation harness behind ``test_pipeline.py``: run the real scripts, measure from outside.

Not part of the runtime path (the producer, consumer and replay never import it). ``plan`` (what a
run is), ``processes`` (the scripts as subprocesses), ``readers`` (outputs and the raw topic),
``scenario`` (one run), ``analysis`` and ``judge`` (pure accounting and criteria), ``report``
(TEST_RESULTS.md and its plot), ``suite`` (the documented benchmark), ``verify`` (``--verify-only``),
``badinput`` (a catalogue of malformed events).
"""
