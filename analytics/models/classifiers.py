"""classifiers rollups and records (filled in by the analytics issue)."""

__all__: list[str] = []
