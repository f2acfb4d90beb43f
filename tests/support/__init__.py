"""What tests, drills and benchmarks share: the labelled set, the app's processes (gunicorn, celery worker and
beat) on a scratch database, private Redis and PostgreSQL servers, and waiting. Nothing here imports Django:
these helpers run the app in subprocesses, as production does."""
