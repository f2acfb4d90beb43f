"""QA: sampling, blind re-review, adjudication, golden items and agreement statistics (built by the QA issue)."""
