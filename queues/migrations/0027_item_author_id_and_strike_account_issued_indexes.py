"""Issue 20, the account page and the account-scoped search at 10M items: item_author_idx (author_ref, source)
becomes item_author_id_idx (author_ref, source, id). An author's newest items are then the index read backwards:
the account page (one page of items, the decisions on them) and a search by author stop after a page instead of
reading every item of the author and sorting them (a busy author has thousands). What used the old index (author
history at triage, the item page's history) reads the new one's first two columns the same way; an extra index
on the items table would cost every intake and triage write, so this one replaces it.
The new index is built first, CONCURRENTLY, then the old one dropped CONCURRENTLY: no query goes without one.
And strike_account_issued_idx (account, issued_at): the account page's strikes newest first, which PostgreSQL
otherwise found by walking every strike in issue order (strike_issued_idx) until it had the account's page.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    RemoveIndexConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0026_accountaction_duration"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(fields=["author_ref", "source", "id"], name="item_author_id_idx"),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="reviewitem", name="item_author_idx"),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="strike",
            index=models.Index(fields=["account", "issued_at"], name="strike_account_issued_idx"),
        ),
    ]
