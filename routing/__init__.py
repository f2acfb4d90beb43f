"""Intake and triage: items enter through the API here, get scored and routed into queues."""
