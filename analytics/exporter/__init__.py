"""The Prometheus exporter behind ``/metrics``: ``refresh`` (the periodic job that keeps the figures in
``MetricsSnapshot``), ``collector`` (a prometheus-client collector over that row, plus the few live reads that
cost nothing: circuit states in the cache, Celery queue lengths in Redis) and ``access`` (who may scrape).
What each metric means, and why the counters live in the database rather than in prometheus-client's
multiprocess directory: docs/metrics.md."""
