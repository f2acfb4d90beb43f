"""Ops analytics: read-only metrics, rollups, dashboards, forecasts and alerts (built by the analytics issue)."""
