"""Classifier scoring: backends, PII redaction, the local model, the scoring pipeline, and the ops pages at
/scoring/."""
