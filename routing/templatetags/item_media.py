"""``{% item_media item as media %}``: an item's stored media for pages outside the reviewer's item page (QA), in
the shape ``routing/media_panel.html`` reads. Only a queued item (ReviewItem) has stored media."""

from __future__ import annotations

from typing import Any

from django import template

from queues.models import ReviewItem
from routing.scoring.media.selectors import item_media as media_of

register = template.Library()


@register.simple_tag
def item_media(item: Any) -> dict[str, Any]:
    return {"media": media_of(item.pk) if isinstance(item, ReviewItem) else []}
