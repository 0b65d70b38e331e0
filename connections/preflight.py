"""What the product checks itself before anyone is sent to Microsoft: the org's tenant (from
the Dynamics Web API's challenge) and the app's credentials (a client-credentials token
request to that tenant). A mistake is told next to the field that holds it, and nothing is
stored or started; an answer that names no field does not block (the authorization that
follows gives the definitive one), and the log says the pre-flight was inconclusive.
"""

from __future__ import annotations

import logging

from accounts.aadsts import Audience, explain
from connections.pending import SubmittedCredential
from lib.dynamics import DynamicsError, discover_tenant, dynamics_app_scope
from lib.entra.errors import EntraError, EntraRejected
from lib.entra.tokens import check_app_credentials

logger = logging.getLogger("dynamics_connect.connections")

# The form field each AADSTS answer of the pre-flight names.
_FIELD_OF_CODE = {
    7000215: "client_secret",
    7000218: "client_secret",
    7000222: "client_secret",
    700027: "certificate",  # not uploaded to the app registration (yet), or not this app's
    700016: "client_id",
    500011: "org_url",
    500014: "org_url",
    90002: "org_url",
}


class SetupProblem(Exception):
    """A mistake in one field of the form, in the admin's words."""

    def __init__(self, field: str, message: str, *, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


def app_setup_check(
    *, client_id: str, credential: SubmittedCredential, org_url: str, account_tenant_id: str = ""
) -> str:
    """The org's tenant id, once the org answers as Dynamics 365 and Entra ID has not refused
    the credentials there; raises SetupProblem naming the field to fix. With
    ``account_tenant_id`` (a re-authorization), an org of another tenant is refused: a
    connection cannot move its account's members to another tenant."""
    try:
        tenant_id = discover_tenant(org_url)
    except DynamicsError as problem:
        raise SetupProblem("org_url", problem.message, code=problem.code) from None
    if account_tenant_id and tenant_id != account_tenant_id:
        raise SetupProblem(
            "org_url",
            f"{org_url} belongs to another Microsoft Entra tenant ({tenant_id}) than this "
            f"account ({account_tenant_id}). Enter an org of your own tenant.",
            code="org_of_another_tenant",
        )
    credentials = credential.on(client_id, tenant_id)
    try:
        check_app_credentials(credentials, scope=dynamics_app_scope(org_url))
    except EntraError as error:
        field = _FIELD_OF_CODE.get(error.aadsts or 0) if isinstance(error, EntraRejected) else None
        if field is None:
            logger.warning(
                "setup pre-flight inconclusive",
                extra={
                    "event": "setup_preflight",
                    "outcome": "inconclusive",
                    "code": error.code,
                    "correlation_id": error.correlation_id,
                    "client_id": client_id,
                    "tenant": tenant_id,
                },
            )
            return tenant_id
        message = explain(error, Audience.ADMIN, client_id=client_id, org_url=org_url).message
        logger.info(
            "setup pre-flight refused",
            extra={
                "event": "setup_preflight",
                "outcome": "failure",
                "code": error.code,
                "field": field,
                "client_id": client_id,
                "tenant": tenant_id,
            },
        )
        raise SetupProblem(field, message, code=error.code) from None
    return tenant_id
