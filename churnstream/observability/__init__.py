"""What an operator sees of a running process: Prometheus metrics, liveness and readiness, lag.

``metrics`` (the series), ``lag`` (per partition, in records and seconds), ``health`` (the two
probes), ``server`` (the HTTP port serving all three). Off unless ``--metrics-port``/METRICS_PORT.
"""
