"""E-mails to an account's admins about its Dynamics connection, once per event.

``connection_notify`` (run by ``check_connections`` after each check) looks at what the check
found and at the credential's expiry, and sends what is due: the connection needs
re-authentication; it is connected again after that; the connected user cannot read a table;
the secret or certificate expires within 30, 7 or 1 days. Each event is a ``ConnectionNotice``
row whose unique key is written in the same transaction as the e-mail is sent: once per event,
also between processes, and again only after the state changed. No e-mail carries a secret,
token or code: only the account, the org, the app's Client Id and words about what to do.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import IntegrityError, transaction

from accounts.models import EntraApp, Membership
from connections.models import ConnectionNotice, DynamicsConnection

logger = logging.getLogger("dynamics_connect.connections")
Status = DynamicsConnection.Status
EXPIRY_STEPS = (1, 7, 30)  # days before a credential expires, most urgent first


def _recipients(connection: DynamicsConnection) -> list[str]:
    admins = Membership.objects.filter(
        account_id=connection.account_id,
        role=Membership.Role.ADMIN,
        is_blocked=False,
        connection_emails=True,
        user__is_active=True,
    ).exclude(user__email="")
    return sorted({m.user.email for m in admins.select_related("user")})


def _links(connection: DynamicsConnection) -> str:
    base = settings.PUBLIC_BASE_URL
    return (
        f"Sign in at {base}/business/{connection.account.account_id} and open Settings > "
        f"Connections ({base}/settings/connections)."
    )


def _footer(connection: DynamicsConnection) -> str:
    return (
        f"\n\nYou receive this as an admin of {connection.account.company_name} in Dynamics "
        "Connect. You can turn these e-mails off for yourself on the Connections page."
    )


def _due(connection: DynamicsConnection, app: EntraApp) -> list[tuple[str, str, str]]:
    """(event, subject, body) for each notice the connection's state calls for now."""
    company, org = connection.account.company_name, connection.org_url
    sent = set(connection.notices.values_list("event", flat=True))
    episode = sum(event.startswith("recovered:") for event in sent)
    # Missing privileges: told once per episode; a check that reads everything ends it.
    privileges_episode = sum(event.startswith("privileges_ok:") for event in sent)
    told_privileges = any(
        e.endswith(f":{privileges_episode}") for e in sent if e.startswith("privileges:")
    )
    due = []
    if connection.status == Status.NEEDS_REAUTH:
        due.append(
            (
                f"needs_reauth:{episode}",
                f"{company}: the Dynamics connection needs re-authentication",
                f"The connection of {company} to Dynamics 365 ({org}) stopped working:\n\n"
                f"{connection.last_error_message}\n\nWhat to do: {_links(connection)} Use the key "
                "icon to re-authorize with current credentials. Until then nothing is read from "
                "Dynamics.",
            )
        )
    elif connection.status in (Status.CONNECTED, Status.WARNINGS) and (
        f"needs_reauth:{episode}" in sent
    ):
        due.append(
            (
                f"recovered:{episode}",
                f"{company}: the Dynamics connection works again",
                f"The connection of {company} to Dynamics 365 ({org}) is connected again, as "
                f"{connection.connected_as}. Nothing else to do.",
            )
        )
    if connection.status == Status.CONNECTED and told_privileges:
        due.append((f"privileges_ok:{privileges_episode}", "", ""))  # recorded, not e-mailed
    if connection.status == Status.WARNINGS:
        due.append(
            (
                f"privileges:{connection.last_error_code}:{privileges_episode}",
                f"{company}: Dynamics Connect cannot read everything it needs",
                f"The connection of {company} to Dynamics 365 ({org}) works, but: "
                f"{connection.last_error_message}\n\nWhat to do: give the connected user "
                f"({connection.connected_as}) that security role in Dynamics 365, then press "
                f"Test connection. {_links(connection)}",
            )
        )
    expiry = app.credential_expiry()
    if expiry is not None and connection.status != Status.DISCONNECTED:
        steps = [step for step in EXPIRY_STEPS if expiry.days_left <= step]
        if steps:
            certificate = app.credential_kind == EntraApp.CredentialKind.CERTIFICATE
            what = "certificate" if certificate else "client secret"
            fix = (
                "Add a new certificate, upload it to the app registration and switch to it"
                if certificate
                else "Create a new client secret in Certificates & secrets and re-authorize "
                "with it (or switch to a certificate)"
            )
            when = "has expired" if expiry.expired else f"expires in {expiry.days_left} day(s)"
            due.append(
                (
                    f"expiry:{app.credential_set_at:%Y%m%dT%H%M%S}:{expiry.date:%Y%m%d}:{steps[0]}",
                    f"{company}: the app's {what} {when}",
                    f"The {what} of the app {app.client_id} that connects {company} to Dynamics "
                    f"365 ({org}) {when} ({expiry.date:%d %B %Y}). After that the connection "
                    f"stops working.\n\nWhat to do: {fix}. The current one keeps working until "
                    f"the new one is proven. {_links(connection)}",
                )
            )
    return due


def connection_notify(*, connection: DynamicsConnection) -> list[str]:
    """Send the e-mails the connection's state calls for that were not sent before; the
    events sent. A failed send is not recorded, so the next run tries again."""
    connection = DynamicsConnection.objects.select_related("account__entra_app").get(
        pk=connection.pk
    )
    recipients = _recipients(connection)
    sent = []
    for event, subject, body in _due(connection, connection.account.entra_app):
        try:
            with transaction.atomic():
                ConnectionNotice.objects.create(connection=connection, event=event)
                if recipients and subject:
                    message = (
                        f"[Dynamics Connect] {subject}",
                        body + _footer(connection),
                        None,
                        recipients,
                    )
                    send_mass_mail([message], fail_silently=False)
        except IntegrityError:
            continue  # sent already (by this or another process)
        except OSError:
            logger.warning(
                "connection notice not sent",
                extra={"event": "notice", "outcome": "failure", "code": event.split(":")[0]},
            )
            continue
        if not subject:
            continue
        sent.append(event)
        logger.info(
            "connection notice sent",
            extra={
                "event": "notice",
                "outcome": "success",
                "code": event.split(":")[0],
                "account": connection.account.account_id,
                "recipients": len(recipients),
            },
        )
    return sent
