"""Extension point for the signed-in home: apps above the kernel (routing's standing scoring incident) put a notice
on it without the kernel importing them. A provider gets the user and returns the notices that user may see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser

from ops_platform.core.models import User


@dataclass(frozen=True)
class HomeNotice:
    title: str
    text: str
    url: str = ""
    link_text: str = ""


NoticeProvider = Callable[[User | AnonymousUser], list[HomeNotice]]
_PROVIDERS: list[NoticeProvider] = []


def home_notice_register(provider: NoticeProvider) -> None:
    if all(p is not provider for p in _PROVIDERS):
        _PROVIDERS.append(provider)


def home_notices(user: User | AnonymousUser) -> list[HomeNotice]:
    return [notice for provider in _PROVIDERS for notice in provider(user)]
