"""``manage.py labeled_import FILE --dataset NAME``: store a labeled set the local model may learn from."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.scoring.training import LabeledFileError, labeled_import


class Command(BaseCommand):
    help = "Import labeled texts (JSONL[.gz] in OpenAI's evaluation-set format, or CSV with label columns)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path")
        parser.add_argument("--dataset", required=True, help="A short name for the set, e.g. openai-moderation-1680.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created, existing = labeled_import(path=options["path"], dataset=options["dataset"])
        except (LabeledFileError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{options['dataset']}: {created} examples imported, {existing} already held.")
