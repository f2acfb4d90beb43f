"""Intake and triage: items enter through the API (``intake``), get scored (``scoring``) and are routed into queues by
the rules (``rules``)."""
