"""Rotate an API client's key from the command line: the new key is printed once, old keys get a grace period."""

from __future__ import annotations

import getpass
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops_platform.core.models import ApiClient
from ops_platform.core.services import api_key_rotate


class Command(BaseCommand):
    help = "Issue a new API key for a client (by source); its current keys keep working for the grace period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="the client's source, e.g. social-app")
        parser.add_argument(
            "--grace-hours", type=float, default=24.0, help="how long the old keys keep working (0: stop now)"
        )

    def handle(self, *args: Any, source: str, grace_hours: float, **options: Any) -> None:
        client = ApiClient.objects.filter(source=source).first()
        if client is None:
            raise CommandError(f"No API client has the source '{source}'.")
        if grace_hours < 0:
            raise CommandError("--grace-hours cannot be negative.")
        _, raw = api_key_rotate(actor=f"cli:{getpass.getuser()}", client=client, grace=timedelta(hours=grace_hours))
        self.stdout.write(f"New key for {client.source} (shown once, store it now): {raw}")
        self.stdout.write(f"Its previous keys stop working in {grace_hours:g} h.")
