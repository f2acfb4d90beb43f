"""``manage.py hash_banks_import FILE``: add the hashes of a ``hash,bank,label`` CSV to their banks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops_platform.core.errors import ApplicationError
from routing.scoring.media.services import banks_import


class Command(BaseCommand):
    help = (
        "Import PDQ (64 hex digits) and MD5 (32 hex digits) hashes from a CSV of hash,bank,label rows, the form "
        "hash-sharing programmes exchange. Banks are created as named; hashes already in a bank are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--actor", default="hash_banks_import", help="Who the audit trail names.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            text = Path(options["path"]).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {options['path']}: {type(exc).__name__}") from None
        try:
            report = banks_import(text=text, actor=options["actor"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"added {report.added}, already there {report.already}, banks: {', '.join(report.banks)}")
