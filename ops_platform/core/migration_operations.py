"""Migration operations the apps share.

``AddIndexConcurrentlyOnPostgreSQL`` builds an index without blocking
writes to a large, busy table: on PostgreSQL with ``CREATE INDEX CONCURRENTLY`` (the migration must say ``atomic =
False``), on SQLite, the embedded demo, as a plain ``CREATE INDEX``, since SQLite has no concurrent build and
Django's ``AddIndexConcurrently`` refuses it. ``RemoveIndexConcurrentlyOnPostgreSQL`` drops one the same way.
``AddIndexConcurrentlyOnPostgreSQLOnly`` is for an index only PostgreSQL can build (a GIN index on a ``tsvector``
expression): built concurrently there, left out elsewhere (the model's state has it either way);
``RemoveIndexConcurrentlyOnPostgreSQLOnly`` drops one.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations


class _PlainElsewhere:
    """The concurrent operation on PostgreSQL; ``plain`` (its non-concurrent Django operation) elsewhere."""

    plain: Any

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)  # type: ignore[misc]
        else:
            self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndexConcurrentlyOnPostgreSQL(_PlainElsewhere, AddIndexConcurrently):
    plain = migrations.AddIndex


class _NothingElsewhere:
    """Does nothing to the schema: the index it stands for exists on PostgreSQL only."""

    @staticmethod
    def database_forwards(*args: Any) -> None:
        return None

    @staticmethod
    def database_backwards(*args: Any) -> None:
        return None


class AddIndexConcurrentlyOnPostgreSQLOnly(_PlainElsewhere, AddIndexConcurrently):
    plain = _NothingElsewhere


class RemoveIndexConcurrentlyOnPostgreSQL(_PlainElsewhere, RemoveIndexConcurrently):
    plain = migrations.RemoveIndex


class DropIndexesConcurrentlyOnPostgreSQL(migrations.RunPython):
    """Drop indexes Django made for a field (``db_index``) that the field no longer asks for, without blocking a
    large, busy table: on PostgreSQL with ``DROP INDEX CONCURRENTLY`` (the migration must say ``atomic = False``).

    Pair it with ``SeparateDatabaseAndState`` whose state operations are the ``AlterField``s: Django's own
    AlterField would also drop and re-add the column's foreign key constraint, and re-adding it checks every row
    under a lock that stops writes. ``indexes`` maps each index name to ``(table, column, opclass)``; an index
    that is not there (SQLite has no ``_like`` indexes) is skipped, and reversing builds them again.
    """

    def __init__(self, indexes: dict[str, tuple[str, str, str]]) -> None:
        self.indexes = indexes
        super().__init__(self._drop, self._create, elidable=False)

    def _concurrently(self, schema_editor: Any) -> str:
        return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""

    def _drop(self, apps: Any, schema_editor: Any) -> None:
        quote = schema_editor.quote_name
        for name in self.indexes:
            schema_editor.execute(f"DROP INDEX{self._concurrently(schema_editor)} IF EXISTS {quote(name)}")

    def _create(self, apps: Any, schema_editor: Any) -> None:
        quote = schema_editor.quote_name
        postgresql = schema_editor.connection.vendor == "postgresql"
        for name, (table, column, opclass) in self.indexes.items():
            if opclass and not postgresql:
                continue
            schema_editor.execute(
                f"CREATE INDEX{self._concurrently(schema_editor)} IF NOT EXISTS {quote(name)} "
                f"ON {quote(table)} ({quote(column)}{' ' + opclass if opclass else ''})"
            )

    def describe(self) -> str:
        return f"Drop indexes {', '.join(self.indexes)}"


class RemoveIndexConcurrentlyOnPostgreSQLOnly(_PlainElsewhere, RemoveIndexConcurrently):
    plain = _NothingElsewhere
