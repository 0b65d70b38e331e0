"""Admins told by e-mail before anything breaks (SPEC 11): once per event, never per run."""

from __future__ import annotations

import contextlib
import email
import io
import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import EntraApp, Membership
from connections.models import DynamicsConnection
from connections.notices import connection_notify
from tests.demo import demo_org

pytestmark = pytest.mark.django_db


def check_all() -> None:
    """The cron job; it exits 1 when a connection is broken (the notices are what count)."""
    with contextlib.suppress(CommandError):
        call_command("check_connections", "--json", stdout=io.StringIO())


def break_the_connection(emulator, demo) -> None:
    """Revoke the connected user's refresh tokens: the next check needs re-authentication."""
    emulator.revoke(demo.admin)


def test_a_broken_connection_is_e_mailed_once_and_its_recovery_once(admin, emulator, demo):
    break_the_connection(emulator, demo)

    check_all()
    check_all()  # the same state again: nothing new to say

    assert [m.subject for m in mail.outbox] == [
        "[Dynamics Connect] Contoso Ltd: the Dynamics connection needs re-authentication"
    ]
    message = mail.outbox[0]
    assert message.to == [demo.admin]
    assert "http://testserver/settings/connections" in message.body
    assert "key icon to re-authorize" in message.body

    admin.reauthorize()
    check_all()
    check_all()
    assert [m.subject for m in mail.outbox][1:] == [
        "[Dynamics Connect] Contoso Ltd: the Dynamics connection works again"
    ]

    break_the_connection(emulator, demo)  # a new episode is told again
    check_all()
    assert len(mail.outbox) == 3


@pytest.mark.parametrize(
    ("member_is", "admin_turned_them_off", "recipients"),
    [
        ("member", False, ["admin"]),  # a member is never told
        ("admin", False, ["admin", "member"]),  # every active admin is
        ("removed admin", False, ["admin"]),  # an admin whose access was removed is not
        ("admin", True, ["member"]),  # nor an admin who turned them off
    ],
)
def test_only_active_admins_who_want_them_get_the_e_mails(
    admin, member, emulator, demo, member_is, admin_turned_them_off, recipients
):
    role = Membership.Role.MEMBER if member_is == "member" else Membership.Role.ADMIN
    Membership.objects.filter(user__email=demo.member).update(
        role=role, is_blocked=member_is == "removed admin"
    )
    if admin_turned_them_off:
        admin.client.post("/settings/connections/emails", {})
    break_the_connection(emulator, demo)

    check_all()

    people = {"admin": demo.admin, "member": demo.member}
    assert [message.to for message in mail.outbox] == [sorted(people[r] for r in recipients)]


@pytest.mark.parametrize(("days_left", "step"), [(29, 30), (6, 7), (0, 1)])
def test_an_expiring_secret_is_told_at_30_7_and_1_days_once_each(admin, days_left, step):
    EntraApp.objects.update(credential_expires_on=timezone.localdate() + timedelta(days=days_left))
    connection = DynamicsConnection.objects.get()

    first = connection_notify(connection=connection)
    again = connection_notify(connection=connection)

    assert [event.rsplit(":", 1)[1] for event in first] == [str(step)]
    assert again == []
    assert "client secret" in mail.outbox[0].subject
    assert "Create a new client secret" in mail.outbox[0].body


def test_no_e_mail_carries_a_secret_token_or_code(admin, emulator, demo):
    EntraApp.objects.update(credential_expires_on=timezone.localdate() + timedelta(days=3))
    break_the_connection(emulator, demo)

    check_all()

    app = EntraApp.objects.get()
    connection = DynamicsConnection.objects.get()
    for message in mail.outbox:
        text = message.subject + message.body
        for secret in (
            demo.client_secret,
            demo.second_client_secret,
            app.credential_encrypted,
            connection.token_cache_encrypted,
        ):
            assert secret not in text
    assert len(mail.outbox) == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_notices_go_out_through_a_real_smtp_server(admin, emulator, demo, settings):
    from aiosmtpd.controller import Controller

    from tests.network_guard import allow_local_port

    received = []

    class Keep:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    allow_local_port(port)
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        break_the_connection(emulator, demo)
        check_all()
    finally:
        controller.stop()

    assert len(received) == 1
    assert received[0].rcpt_tos == [demo.admin]
    message = email.message_from_bytes(received[0].content)
    assert "needs re-authentication" in " ".join(message["Subject"].split())
    assert "key icon to re-authorize" in message.get_payload()


def test_a_missing_privilege_is_e_mailed_once(admin, emulator, demo):
    emulator.seed(
        {
            "dynamics_orgs": [
                demo_org(demo, roles={demo.admin: ["prvReadContact", "prvReadAccount"]})
            ]
        }
    )

    check_all()
    check_all()

    assert len(mail.outbox) == 1
    assert "cannot read everything it needs" in mail.outbox[0].subject
    assert "cannot read Leads" in mail.outbox[0].body


def test_a_missing_privilege_fixed_then_missing_again_is_told_again(admin, emulator, demo):
    restricted = demo_org(demo, roles={demo.admin: ["prvReadContact"]})
    emulator.seed({"dynamics_orgs": [restricted]})
    check_all()
    emulator.seed({"dynamics_orgs": [demo_org(demo, roles={})]})  # the role was given
    check_all()
    emulator.seed({"dynamics_orgs": [restricted]})  # and taken away again
    check_all()

    subjects = [m.subject for m in mail.outbox]
    assert len(subjects) == 2
    assert all("cannot read everything it needs" in subject for subject in subjects)


def test_a_corrected_expiry_date_is_told_by_its_own_steps(admin):
    connection = DynamicsConnection.objects.get()
    EntraApp.objects.update(credential_expires_on=timezone.localdate() + timedelta(days=6))
    connection_notify(connection=connection)
    EntraApp.objects.update(credential_expires_on=timezone.localdate() + timedelta(days=5))

    assert connection_notify(connection=connection)  # a new date: its 7-day notice again
    assert len(mail.outbox) == 2
