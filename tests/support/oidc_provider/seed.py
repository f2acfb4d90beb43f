"""Set up the provider's world from a JSON argument: the platform as a confidential client, and people with
their groups (a person named again gets exactly the groups given now).

    DJANGO_SETTINGS_MODULE=tests.support.oidc_provider.settings python -m tests.support.oidc_provider.seed '{...}'
"""

from __future__ import annotations

import json
import sys

import django


def main(spec: dict) -> None:
    django.setup()
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    if "client" in spec:
        client = spec["client"]
        Application.objects.filter(client_id=client["id"]).delete()
        Application.objects.create(
            name="ops platform",
            client_id=client["id"],
            client_secret=client["secret"],
            client_type=Application.CLIENT_CONFIDENTIAL,
            authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            redirect_uris=client["redirect_uri"],
            algorithm=Application.RS256_ALGORITHM,
            skip_authorization=True,
        )
    for person in spec.get("people", []):
        user, _ = User.objects.get_or_create(username=person["username"])
        user.email = person.get("email", "")
        user.set_password(person["password"])
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in person.get("groups", [])])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
