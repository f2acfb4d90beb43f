"""Content wipes (retention purge and erasure): the registry through which each app wipes its own copies of items'
content, so the kernel and queues never import the apps that keep those copies (docs/retention.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ops_platform.core.models import WebhookEvent, WebhookEventType


@dataclass(frozen=True)
class ContentWipe:
    """Items whose content is going, in one committed batch.

    ``erasure`` False: a retention purge (content only; hashes and records stay). True: an erasure, which also
    removes what identifies a person. ``account_refs`` maps an erased author reference of ``source`` to the
    pseudonym that replaces it everywhere (erasure by account only).
    """

    item_ids: list[int]
    erasure: bool = False
    source: str = ""
    account_refs: dict[str, str] = field(default_factory=dict, repr=False)


# A step wipes what its app keeps about the batch, inside the batch's transaction, and returns how many rows or
# files it changed.
WipeStep = Callable[[ContentWipe], int]

_steps: dict[str, WipeStep] = {}


def content_wipe_step_register(name: str, step: WipeStep) -> None:
    """Register (or replace, on a second ``ready()``) the step named ``name``."""
    _steps[name] = step


def content_wipe_steps() -> dict[str, WipeStep]:
    return dict(_steps)


def content_wipe_run(wipe: ContentWipe) -> dict[str, int]:
    """Every registered step on one batch; what each changed, by step name."""
    return {name: step(wipe) for name, step in sorted(_steps.items())}


def webhook_payloads_wipe(wipe: ContentWipe) -> int:
    """The kernel's step: ``account.action`` payloads name the account; an erased account's reference becomes its
    pseudonym and the free-text reason goes (``decision.final`` payloads hold ids and outcomes only)."""
    changed = 0
    for ref, pseudonym in wipe.account_refs.items():
        events = WebhookEvent.objects.filter(
            client__source=wipe.source,
            event_type=WebhookEventType.ACCOUNT_ACTION,
            payload__source=wipe.source,
            payload__account_ref=ref,
        )
        for event in events:
            event.payload = {**event.payload, "account_ref": pseudonym, "reason": "", "reversal_reason": None}
            event.save(update_fields=["payload"])
            changed += 1
    return changed
