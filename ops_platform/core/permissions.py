"""One way for a page view to say who may see it.

Views are wrapped in ``login_required``; ``permitted`` then returns the signed-in ``User`` when they hold at least
one of the named permissions and raises ``PermissionDenied`` (a 403) otherwise. Services check again on their own
(a rule a view enforces but a service does not is not a rule); this is only the page's door."""

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from ops_platform.core.models import User


def has_any(user: object, *perms: str) -> bool:
    return isinstance(user, User) and any(user.has_perm(p) for p in perms)


def permitted(request: HttpRequest, *perms: str) -> User:
    """The request's user if they hold any of ``perms``; ``PermissionDenied`` otherwise."""
    if not perms:
        raise ValueError("permitted() needs at least one permission")
    user = request.user
    if not isinstance(user, User) or not has_any(user, *perms):
        raise PermissionDenied
    return user
