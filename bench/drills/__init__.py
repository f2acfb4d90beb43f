"""Fault drills: each proves one promise of DESIGN.md by breaking something on purpose (see ``all.py``)."""
