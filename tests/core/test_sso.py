"""Single sign-on against a real OpenID Connect provider (django-oauth-toolkit in its own process, a fresh RSA key),
the platform on the live server, the whole authorization-code flow over HTTP; local passwords switched off, the
break-glass admin and the sign-in throttle; the sign-in service itself."""

from __future__ import annotations

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from ops_platform.core.models import AuditLog, ReviewerProfile, Role, SsoIdentity, Team, User, Vendor
from ops_platform.core.services import user_create
from ops_platform.core.sso import SsoClaims, SsoRefused, sso_sign_in
from tests.conftest import PASSWORD
from tests.core.sso_support import (
    TamperingTokenEndpoint,
    claims_swapped,
    provider_person,
    provider_sign_in,
    sso_flow,
)
from tests.core.sso_support import oidc_provider as oidc_provider
from tests.core.sso_support import sso_on as sso_on
from tests.settings import PRODUCTION_AUTHENTICATION_BACKENDS
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def _actions(user: User | None = None) -> list[str]:
    rows = AuditLog.objects.filter(action__startswith="user.")
    if user is not None:
        rows = rows.filter(target_type="core.user", target_id=str(user.pk))
    return sorted(rows.values_list("action", flat=True))


# --- through HTTP, with the real provider ------------------------------------------------------------------


def test_first_sign_in_creates_the_person_with_the_roles_and_vendor_team_of_their_groups(live_server, sso_on):
    provider_person(sso_on, "ann", ["ops-reviewers", "vendor-a-reviewers", "unrelated-group"])

    _, landed = sso_flow(live_server.url, "ann")

    assert landed.status_code == 200
    assert str(landed.url) == f"{live_server.url}/"
    assert "Welcome, ann" in landed.text
    ann = User.objects.get(username="ann")
    assert ann.roles == ["reviewer"]
    assert ann.email == "ann@idp.test"
    assert not ann.has_usable_password()
    assert ReviewerProfile.objects.get(user=ann).team.slug == "vendor-a-team"
    assert SsoIdentity.objects.get(user=ann).issuer == sso_on.issuer
    assert _actions(ann) == ["user.create", "user.sign_in"]
    sign_in = AuditLog.objects.get(action="user.sign_in")
    assert sign_in.after == {"method": "sso", "roles": ["reviewer"]}
    assert sign_in.actor == ann


def test_roles_and_team_follow_the_groups_at_every_sign_in(live_server, sso_on):
    provider_person(sso_on, "ben", ["ops-reviewers", "ops-qa", "vendor-a-reviewers"])
    sso_flow(live_server.url, "ben")
    ben = User.objects.get(username="ben")
    assert ben.roles == ["reviewer", "senior_reviewer"]

    provider_person(sso_on, "ben", ["ops-reviewers"])  # the provider drops the QA group and the vendor's
    _, landed = sso_flow(live_server.url, "ben")

    assert landed.status_code == 200
    assert User.objects.get(pk=ben.pk).roles == ["reviewer"]
    assert ReviewerProfile.objects.get(user=ben).team is None
    synced = AuditLog.objects.get(action="user.roles_sync")
    assert synced.before["roles"] == ["reviewer", "senior_reviewer"]
    assert synced.after["roles"] == ["reviewer"]
    assert (synced.before["team"], synced.after["team"]) == ("vendor-a-team", None)
    assert User.objects.filter(username__startswith="ben").count() == 1  # the same person, matched on sub

    provider_person(sso_on, "ben", ["ops-admins"])
    sso_flow(live_server.url, "ben")
    ben.refresh_from_db()
    assert (ben.roles, ben.is_staff, ben.is_superuser) == (["admin"], True, True)


def test_a_person_whose_groups_give_no_role_gets_a_refusal_page_and_no_account(live_server, sso_on):
    provider_person(sso_on, "cleo", ["marketing", "<script>alert(1)</script>"])

    client, landed = sso_flow(live_server.url, "cleo")

    assert landed.status_code == 403
    assert "None of your groups at the identity provider gives a role" in landed.text
    assert "<script>alert(1)</script>" not in landed.text
    assert not User.objects.filter(username__startswith="cleo").exists()
    refused = AuditLog.objects.get(action="user.sign_in_refused")
    assert refused.after == {"method": "sso", "groups": 2}
    assert client.get(f"{live_server.url}/", follow_redirects=False).status_code == 302  # not signed in


def test_a_person_whose_last_role_group_is_removed_loses_the_role_and_is_refused(live_server, sso_on):
    provider_person(sso_on, "dan", ["ops-policy"])
    sso_flow(live_server.url, "dan")
    dan = User.objects.get(username="dan")
    assert dan.roles == ["policy_staff"]

    provider_person(sso_on, "dan", [])
    _, landed = sso_flow(live_server.url, "dan")

    assert landed.status_code == 403
    assert User.objects.get(pk=dan.pk).roles == []
    assert _actions(dan) == ["user.create", "user.roles_sync", "user.sign_in", "user.sign_in_refused"]


def test_a_callback_with_a_state_this_session_did_not_start_is_refused(live_server, sso_on):
    provider_person(sso_on, "eve", ["ops-reviewers"])
    victim = httpx.Client(follow_redirects=True, timeout=30)
    # The victim's browser is lured into completing a flow the attacker started: the attacker stops at the
    # callback, with a real code and state, and hands that URL over.
    attacker = httpx.Client(follow_redirects=False, timeout=30)
    step = attacker.get(f"{live_server.url}/accounts/sso/start")
    while "/accounts/sso/callback" not in step.headers.get("location", ""):
        if step.status_code == 200:  # the provider's sign-in form
            step = provider_sign_in(attacker, step, "eve")
            continue
        step = attacker.get(step.url.join(step.headers["location"]))
    callback = step.headers["location"]
    assert "code=" in callback
    assert "state=" in callback

    victim.get(f"{live_server.url}/accounts/sso/start")  # the victim has a flow of their own: other states
    refused = victim.get(callback)
    assert refused.status_code == 400
    assert "was not started from this browser" in refused.text  # the project's page, not a bare 400
    forged = victim.get(f"{live_server.url}/accounts/sso/callback", params={"code": "x", "state": "forged"})
    assert forged.status_code == 400
    assert not User.objects.filter(username__startswith="eve").exists()
    assert victim.get(f"{live_server.url}/", follow_redirects=False).status_code == 302

    # The attacker's own session, whose state it is, completes it: the check is the state, not the code.
    assert attacker.get(callback).status_code == 302
    assert User.objects.filter(username="eve").exists()


def test_a_provider_error_answer_is_a_refusal_page(live_server, sso_on):
    answer = httpx.get(
        f"{live_server.url}/accounts/sso/callback", params={"error": "access_denied", "state": "x"}, timeout=30
    )
    assert answer.status_code == 403
    assert "did not sign you in" in answer.text


def test_single_sign_on_is_off_by_default(client, settings):
    assert settings.OIDC_ENABLED is False
    assert client.get("/accounts/sso/start").status_code == 404
    assert client.get("/accounts/sso/callback", {"code": "x", "state": "y"}).status_code == 404
    page = client.get("/accounts/login/")
    assert b"single sign-on" not in page.content
    assert b'name="password"' in page.content


# --- local passwords off, break glass, throttling ---------------------------------------------------------


@pytest.fixture
def passwords_off(settings):
    settings.AUTHENTICATION_BACKENDS = PRODUCTION_AUTHENTICATION_BACKENDS
    settings.OIDC_ENABLED = True
    settings.LOCAL_PASSWORDS = False
    return settings


def test_with_local_passwords_off_the_sign_in_page_offers_only_single_sign_on(passwords_off, reviewer):
    client = Client()
    page = client.get("/accounts/login/")
    assert b"Sign in with single sign-on" in page.content
    assert b'name="password"' not in page.content

    refused = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert refused.status_code == 403
    assert b"Password sign-in is switched off" in refused.content
    assert client.get("/").status_code == 302


def test_with_local_passwords_off_the_admin_takes_no_password_but_the_break_glass_one(passwords_off, admin_user):
    client = Client()
    page = client.get("/admin/login/")
    assert b"Sign in with single sign-on" in page.content
    assert b'name="password"' not in page.content
    client.post("/admin/login/", {"username": "ada", "password": PASSWORD})
    assert client.get("/admin/").status_code == 302  # still the admin's sign-in page

    passwords_off.LOCAL_PASSWORDS_BREAK_GLASS = ["ada"]
    assert b"break-glass accounts only" in client.get("/admin/login/").content
    assert client.post("/accounts/login/", {"username": "ada", "password": PASSWORD}).status_code == 403
    signed_in = client.post("/admin/login/", {"username": "ada", "password": PASSWORD, "next": "/admin/"})
    assert signed_in.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert AuditLog.objects.get(action="user.sign_in").after == {"method": "break_glass", "roles": ["admin"]}
    refused = AuditLog.objects.get(action="user.sign_in_refused", target_id=str(admin_user.pk))
    assert (refused.reason, refused.actor_label) == ("Password sign-in is switched off here.", "anonymous")


def test_break_glass_is_for_superusers_only(passwords_off, ops_manager):
    passwords_off.LOCAL_PASSWORDS_BREAK_GLASS = ["olga"]
    client = Client()
    client.post("/admin/login/", {"username": "olga", "password": PASSWORD})
    assert client.get("/").status_code == 302
    refused = AuditLog.objects.get(action="user.sign_in_refused")
    assert (refused.after, refused.reason) == (
        {"method": "break_glass"},
        "Only a superuser may sign in with a break-glass password.",
    )
    assert not AuditLog.objects.filter(action="user.sign_in").exists()


# --- local password sign-ins are audited as single sign-on's are -------------------------------------------


def test_a_password_sign_in_is_audited_like_a_single_sign_on(reviewer):
    client = Client()
    assert client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 302

    signed_in = AuditLog.objects.get(action="user.sign_in")
    assert (signed_in.actor, signed_in.target_id) == (reviewer, str(reviewer.pk))
    assert signed_in.after == {"method": "password", "roles": ["reviewer"]}


def test_failed_password_sign_ins_are_audited_without_the_password_or_an_unknown_name(reviewer, admin_user):
    Client().post("/accounts/login/", {"username": "alice", "password": "guess-one"})
    Client().post("/admin/login/", {"username": "ada", "password": "guess-two"})
    Client().post("/accounts/login/", {"username": "hunter2-typed-in-the-wrong-box", "password": "x"})
    User.objects.filter(pk=reviewer.pk).update(is_active=False)
    Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    refused = AuditLog.objects.filter(action="user.sign_in_refused").order_by("pk")
    assert [(r.target_id, r.reason) for r in refused] == [
        (str(reviewer.pk), "Wrong password."),
        (str(admin_user.pk), "Wrong password."),
        ("", "No account has this username."),
        (str(reviewer.pk), "The account is switched off."),
    ]
    assert {(r.actor_id, r.actor_label) for r in refused} == {(None, "anonymous")}  # not the account's owner
    assert not AuditLog.objects.filter(action="user.sign_in").exists()
    stored = str(list(AuditLog.objects.values()))
    for typed in ("guess-one", "guess-two", "hunter2", PASSWORD):
        assert typed not in stored


def test_the_admin_shows_sso_identities_read_only(admin_user, reviewer):
    SsoIdentity.objects.create(user=reviewer, issuer="https://idp.test", subject="alice-at-idp")
    client = Client()
    client.force_login(admin_user)
    listing = client.get("/admin/core/ssoidentity/?q=alice")
    assert listing.status_code == 200
    assert b"alice-at-idp" in listing.content
    identity = SsoIdentity.objects.get()
    page = client.get(f"/admin/core/ssoidentity/{identity.pk}/change/")
    assert page.status_code == 200
    assert b'name="subject"' not in page.content  # shown, not editable
    assert client.post(f"/admin/core/ssoidentity/{identity.pk}/change/", {"subject": "bob"}).status_code == 403
    assert client.get("/admin/core/ssoidentity/add/").status_code == 403
    assert SsoIdentity.objects.get().subject == "alice-at-idp"


def test_switching_passwords_off_ends_password_sessions(settings, reviewer):
    settings.AUTHENTICATION_BACKENDS = PRODUCTION_AUTHENTICATION_BACKENDS
    client = Client()
    client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert client.get("/").status_code == 200
    settings.OIDC_ENABLED = True
    settings.LOCAL_PASSWORDS = False
    assert client.get("/").status_code == 302


def test_the_sign_in_throttle_still_counts_local_passwords_with_sso_on(settings, reviewer):
    settings.AUTHENTICATION_BACKENDS = PRODUCTION_AUTHENTICATION_BACKENDS
    settings.OIDC_ENABLED = True
    client = Client()
    assert b"Sign in with single sign-on" in client.get("/accounts/login/").content
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    locked = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert client.get("/").status_code == 302


def test_the_throttle_counts_break_glass_attempts_too(passwords_off, admin_user):
    passwords_off.LOCAL_PASSWORDS_BREAK_GLASS = ["ada"]
    client = Client()
    for _ in range(passwords_off.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "ada", "password": "wrong"})
    assert client.post("/admin/login/", {"username": "ada", "password": PASSWORD}).status_code == 429


# --- the service ---------------------------------------------------------------------------------------------


@pytest.fixture
def mapping(settings):
    settings.OIDC_ROLE_GROUPS = {"ops-reviewers": "reviewer", "ops-admins": "admin"}
    settings.OIDC_TEAM_GROUPS = {"vendor-a-reviewers": "vendor-a-team", "vendor-b-reviewers": "vendor-b-team"}
    vendor_a = Vendor.objects.create(slug="vendor-a", name="Vendor A")
    vendor_b = Vendor.objects.create(slug="vendor-b", name="Vendor B")
    Team.objects.create(slug="vendor-a-team", name="A", vendor=vendor_a)
    Team.objects.create(slug="vendor-b-team", name="B", vendor=vendor_b)
    return settings


def _claims(sub: str = "42", groups: list[str] | None = None, username: str = "zoe") -> SsoClaims:
    return SsoClaims(issuer="https://idp.test", subject=sub, preferred_username=username, groups=groups or [])


def test_a_new_person_never_takes_over_a_local_account_of_the_same_name(mapping, reviewer):
    newcomer = sso_sign_in(_claims(groups=["ops-reviewers"], username="alice"))
    assert newcomer.username == "alice-2"
    assert newcomer.pk != reviewer.pk


def test_groups_naming_two_teams_are_refused(mapping):
    with pytest.raises(SsoRefused, match="more than one team"):
        sso_sign_in(_claims(groups=["ops-reviewers", "vendor-a-reviewers", "vendor-b-reviewers"]))
    assert not User.objects.filter(username="zoe").exists()
    assert AuditLog.objects.filter(action="user.sign_in_refused").count() == 1


def test_a_switched_off_person_is_refused_and_keeps_their_roles_for_the_record(mapping):
    zoe = sso_sign_in(_claims(groups=["ops-reviewers"]))
    User.objects.filter(pk=zoe.pk).update(is_active=False)
    with pytest.raises(SsoRefused, match="switched off"):
        sso_sign_in(_claims(groups=["ops-reviewers"]))
    assert User.objects.get(pk=zoe.pk).roles == ["reviewer"]


def test_a_team_assigned_by_hand_outside_the_mapping_stays(mapping, in_house_team):
    person = user_create(actor="test", username="yan", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)
    SsoIdentity.objects.create(user=person, issuer="https://idp.test", subject="7")
    sso_sign_in(_claims(sub="7", groups=["ops-reviewers"]))
    assert ReviewerProfile.objects.get(user=person).team == in_house_team


def test_a_role_map_naming_no_role_is_a_configuration_error(mapping):
    mapping.OIDC_ROLE_GROUPS = {"ops-reviewers": "superhero"}
    with pytest.raises(ImproperlyConfigured, match="superhero"):
        sso_sign_in(_claims(groups=["ops-reviewers"]))


def test_an_id_token_from_another_issuer_is_refused(live_server, sso_on, settings):
    provider_person(sso_on, "ivo", ["ops-reviewers"])
    settings.OIDC_OP_ISSUER = "https://someone-else.test/o"

    _, refused = sso_flow(live_server.url, "ivo")

    assert refused.status_code == 400
    assert "could not be verified" in refused.text
    assert not User.objects.filter(username="ivo").exists()
    assert AuditLog.objects.get(action="user.sign_in_refused").reason == "The ID token comes from another issuer."


@pytest.mark.parametrize(
    ("tamper", "audited"),
    [
        # A real token of the provider's with the subject swapped for another person's: its signature fails.
        (lambda token: claims_swapped(token, sub="someone-else", preferred_username="ada"), "SuspiciousOperation"),
        (lambda token: "not-a-token", "DecodeError"),
        (lambda token: ".".join(token.split(".")[:2]) + ".", "SuspiciousOperation"),  # signature stripped
    ],
    ids=["claims-swapped", "garbage", "unsigned"],
)
def test_a_forged_id_token_gets_the_error_page_and_is_audited(live_server, sso_on, settings, tamper, audited):
    provider_person(sso_on, "mal", ["ops-admins"])
    relay = TamperingTokenEndpoint(settings.OIDC_OP_TOKEN_ENDPOINT, tamper)
    settings.OIDC_OP_TOKEN_ENDPOINT = relay.url
    try:
        client, refused = sso_flow(live_server.url, "mal")
    finally:
        relay.stop()

    assert refused.status_code == 400
    assert "You are not signed in" in refused.text  # the project's page, not Django's bare "Bad Request"
    assert "could not be verified" in refused.text
    assert 'data-testid="sso-refused"' in refused.text
    assert not User.objects.filter(username__in=["mal", "ada"]).exists()
    assert client.get(f"{live_server.url}/", follow_redirects=False).status_code == 302  # not signed in
    row = AuditLog.objects.get(action="user.sign_in_refused")
    assert (row.actor_label, row.target_type, row.after) == ("sso", "sso_identity", {"method": "sso"})
    assert row.reason == f"The ID token did not verify ({audited})."


def test_a_provider_that_does_not_answer_is_a_page_saying_so(live_server, sso_on, settings):
    provider_person(sso_on, "kim", ["ops-reviewers"])
    settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{free_port()}/o/token/"  # nothing listens there

    _, answer = sso_flow(live_server.url, "kim")

    assert answer.status_code == 502
    assert "did not answer" in answer.text
    assert not User.objects.filter(username="kim").exists()
