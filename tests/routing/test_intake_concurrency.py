"""Concurrent duplicate submissions over real HTTP to a real PostgreSQL end with one item per external id."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ops_platform.core.models import ApiScope
from ops_platform.core.services import api_client_create
from queues.models import Queue, ReviewItem

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8
IDS = 1000


def test_8_threads_posting_the_same_1000_external_ids_store_exactly_1000_items(live_server):
    Queue.objects.create(slug="general", name="General", is_default_intake=True)
    client, key = api_client_create(actor="test", name="Racer", source="racer", scopes=[ApiScope.ITEMS_WRITE])
    client.rate_limit_per_minute = 100_000
    client.save()
    batches = [
        [{"external_id": f"dup-{i}", "text": f"racing item {i}"} for i in range(s, s + 250)] for s in range(0, IDS, 250)
    ]

    def post_everything(thread: int) -> list[dict]:
        results = []
        with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            # Each thread walks the batches in its own order, so the same ids collide from all sides.
            order = batches[thread % len(batches) :] + batches[: thread % len(batches)]
            for batch in order:
                response = http.post("/api/v1/items", json=batch)
                assert response.status_code in (200, 201), response.text
                results += response.json()["results"]
        return results

    with ThreadPoolExecutor(THREADS) as pool:
        per_thread = list(pool.map(post_everything, range(THREADS)))

    assert ReviewItem.objects.filter(source="racer").count() == IDS
    created = [r for results in per_thread for r in results if r["status"] == 201]
    assert len(created) == IDS, "each external id must be reported created exactly once"
    assert len({r["external_id"] for r in created}) == IDS
    ids_by_external = {}
    for results in per_thread:
        for r in results:
            assert ids_by_external.setdefault(r["external_id"], r["id"]) == r["id"]
