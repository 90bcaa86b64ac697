"""The contract: what an event is (``schema``, ``events``) and what the pipeline writes (``outputs``).

Every other module imports field names, header names, modes, guarantees and stages from here.
"""
