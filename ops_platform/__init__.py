"""Project package: settings, root URLs, the Celery app and the shared kernel (``core``)."""

from ops_platform.celery import app as celery_app

__all__ = ["celery_app"]
