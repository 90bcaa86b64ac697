"""The consumer, one stage per module: ``options``, ``identity``, ``scoring`` (validation -> model ->
prediction or dead letter), ``sinks`` (delivery and commit), ``stats``, ``loop``, and ``run`` (start-up)."""
