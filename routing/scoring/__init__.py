"""Classifier scoring: backends, PII redaction, the local model, and the scoring pipeline."""
