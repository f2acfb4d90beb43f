"""Routing CPU per 1,000 items (this process + its PostgreSQL backend) with the account features rules read, and
with them switched off, in turns: a rough figure for issue 20 (bench/accounts.py, at 10M items, is not written yet).

    .venv/bin/python bench/accounts_triage.py [--accounts 20000] [--rounds 6]
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta
from typing import Any

import benchlib

BATCH = 1000
DAYS_90 = timedelta(days=90)


def main() -> None:
    p = benchlib.parser(__doc__, "bench_accounts_triage")
    p.add_argument("--accounts", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    with benchlib.scratch(args):
        run(args)


def run(args: Any) -> None:
    from django.db import connection
    from django.utils import timezone

    import routing.rules.features as features
    from ops_platform.core.models import Policy, User
    from queues.accounts.services import accounts_ensure
    from queues.models import Account, AccountLabel, Decision, ItemState, Queue, ReviewItem, Strike
    from queues.selectors import items_load
    from routing.rules.apply import items_route
    from routing.rules.features import TRIAGE_FIELDS
    from routing.rules.lifecycle import RuleData
    from routing.rules.models import RuleAction, RuleSetKind
    from tests.routing.rules_setup import policy_staff_member, ruleset_live

    rng = random.Random(7)
    now = timezone.now()
    general = Queue.objects.create(slug="general", name="General", is_default_intake=True)
    watch = Queue.objects.create(slug="repeat-offenders", name="Repeat offenders")
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    person = User.objects.create(username="bench")
    # A live intake rule set that reads the account features, so routing computes them.
    rules = [
        RuleData(name="struck", condition="author.strikes >= 1", action=RuleAction.ROUTE, queue_id=watch.pk),
        RuleData(name="flagger", condition='author.labels contains "trusted"', action=RuleAction.TAG, tags=["tf"]),
    ]
    staff = policy_staff_member("pat"), policy_staff_member("priya")
    ruleset_live(RuleSetKind.INTAKE, rules, author=staff[0], approver=staff[1], default_queue=general)
    refs = [f"user-{n}" for n in range(args.accounts)]
    accounts_ensure(rows=[{"source": "bench", "author_ref": r} for r in refs], at=now)
    struck = rng.sample(refs, args.accounts * 3 // 10)
    old = ReviewItem.objects.bulk_create(
        ReviewItem(source="bench", external_id=f"old-{n}", text="x", author_ref=r, received_at=now, state="decided")
        for n, r in enumerate(struck)
    )
    decisions = Decision.objects.bulk_create(
        Decision(item=i, reviewer=person, policy=policy, is_violation=True, decided_at=now) for i in old
    )
    ids = dict(Account.objects.values_list("ref", "pk"))
    struck_for = {"policy": policy, "family": "spam", "weight": 1, "issued_at": now, "expires_at": now + DAYS_90}
    Strike.objects.bulk_create(Strike(account_id=ids[d.item.author_ref], decision=d, **struck_for) for d in decisions)
    AccountLabel.objects.bulk_create(
        AccountLabel(account_id=ids[r], label="trusted-flagger", set_at=now, set_by_label="bench")
        for r in rng.sample(refs, args.accounts // 50)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    real = features.account_features
    counter = iter(range(10**9))

    def batch() -> list[Any]:
        new = {"source": "bench", "text": "buy cheap followers now", "received_at": now, "state": ItemState.RECEIVED}
        made = ReviewItem.objects.bulk_create(
            ReviewItem(external_id=f"new-{next(counter)}", author_ref=rng.choice(refs), **new) for _ in range(BATCH)
        )
        return items_load([i.pk for i in made], fields=TRIAGE_FIELDS)

    cpu: dict[str, list[float]] = {"with": [], "without": []}
    for round_ in range(args.rounds * 2 + 2):
        mode = "with" if round_ % 2 == 0 else "without"
        features.account_features = real if mode == "with" else (lambda pairs, **kw: {})  # type: ignore[assignment]
        items = batch()
        start = time.process_time() + benchlib.process_cpu(backend)
        items_route(items=items)
        spent = time.process_time() + benchlib.process_cpu(backend) - start
        if round_ >= 2:  # the first pair warms caches
            cpu[mode].append(spent * 1000)
    features.account_features = real
    with_ms, without_ms = statistics.median(cpu["with"]), statistics.median(cpu["without"])
    print(f"accounts {args.accounts}, struck {len(struck)}, rounds {args.rounds} of {BATCH} items each")
    print(f"triage (routing) CPU per 1,000 items, without account features: {without_ms:.0f} ms (median)")
    print(f"triage (routing) CPU per 1,000 items, with account features:    {with_ms:.0f} ms (median)")
    print(f"rounds (ms): without {[round(v) for v in cpu['without']]}, with {[round(v) for v in cpu['with']]}")
    print(f"added by account features: {with_ms - without_ms:.0f} ms ({(with_ms / without_ms - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
