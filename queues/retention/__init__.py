"""Retention and erasure of items' content, and the legal holds that suspend both (docs/retention.md)."""
