"""Intake: the REST API for items and appeals, idempotency, the hand-off to triage, and dead letters."""
