"""Routing and escalation rules: the rule language, versions and their approval, routing items by them, backtests and
the rule editor at /rules/."""
