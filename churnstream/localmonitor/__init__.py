"""A local Prometheus the project installs and starts itself (``make monitor``), for the pipeline's metrics.

Not part of the runtime path, like churnstream.localkafka: the consumer and producer only serve
``/metrics``; this scrapes them. The configuration, alert rules and dashboard are in monitoring/.
"""
