"""Escalation notices: when an escalation rule that says "notify" moves items into a queue, that queue's leads
(active senior reviewers the queue admits, with an email address) get one email per rule and run.

The email names the queue, the rule, how many items and their ids, with a link to the reviewer workspace; never
an item's content, which is attacker-controlled and would leave the platform. It is sent by a Celery task after
the escalation committed, retried when the mail server does not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.urls import reverse

from ops_platform.core.models import User
from queues.models import Queue

logger = logging.getLogger(__name__)

# Ids listed in one email; a larger escalation says how many more.
LISTED_IDS = 50


def queue_leads(queue: Queue) -> list[User]:
    """Active senior reviewers (who may bulk-decide and re-review) with an email address whom the queue admits."""
    seniors = (
        User.objects.filter(is_active=True, groups__permissions__codename="bulk_decide")
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    return [user for user in seniors if queue.admits(user.pk)]


def escalation_notice_send(*, queue_id: int, item_ids: Sequence[int], rule: str) -> int:
    """Email the leads of the queue that ``item_ids`` were escalated into by ``rule``; returns emails sent."""
    queue = Queue.objects.filter(pk=queue_id).first()
    if queue is None or not item_ids:
        return 0
    leads = queue_leads(queue)
    if not leads:
        logger.warning("escalation notice: queue %s has no lead with an email address", queue.slug)
        return 0
    ids = sorted(item_ids)
    listed = ", ".join(str(pk) for pk in ids[:LISTED_IDS])
    more = f" and {len(ids) - LISTED_IDS} more" if len(ids) > LISTED_IDS else ""
    n = len(ids)
    subject = f"{n} item{'s' if n != 1 else ''} escalated to {queue.name}"
    body = (
        f"The escalation rule '{rule}' moved {n} overdue item{'s' if n != 1 else ''} into {queue.name}.\n\n"
        f"Items: {listed}{more}.\n\n"
        f"Review them from your queues: {settings.SITE_URL}{reverse('review-queues')}\n\n"
        "You get this because you lead this queue (a senior reviewer it admits)."
    )
    messages = [EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [lead.email]) for lead in leads]
    sent = get_connection().send_messages(messages) or 0
    logger.info("escalation notice: %s emails for %s items into %s by rule %r", sent, n, queue.slug, rule)
    return sent
