"""Accounts: strikes, thresholds and account actions, entity labels, reports about accounts (docs/accounts.md)."""
