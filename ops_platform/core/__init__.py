"""The shared kernel: people and roles, teams and vendors, the policy taxonomy, API clients, the audit log."""
