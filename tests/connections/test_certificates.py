"""Certificate credentials the product generates (SPEC 7): signup, use, rotation, expiry."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.utils import timezone

from accounts.models import EntraApp
from connections.health import connection_check
from connections.models import DynamicsConnection, PendingAuthorization
from lib import certificates, crypto
from tests.connections.test_reauthorize import stored_row
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db

CERTIFICATE_PAGE = "/Dynamics/Signup/certificate"


def authorize_requests(emulator) -> int:
    return len([e for e in emulator.log() if e["endpoint"] == "authorize"])


def private_key_of(pending: PendingAuthorization) -> str:
    return crypto.decrypt(
        pending.credential_encrypted, context=pending.credential_context()
    ).reveal()


def key_body(private_key_pem: str) -> str:
    """The base64 body of a PEM key: what would leak, whatever the framing."""
    return "".join(line for line in private_key_pem.splitlines() if "-----" not in line)


def start_certificate_signup(visitor, demo):
    form = signup_form(demo, credential_kind="certificate", client_secret="")
    response = visitor.client.post(SIGNUP_URL, form)
    assert response.status_code == 302 and response["Location"] == CERTIFICATE_PAGE
    return PendingAuthorization.objects.get()


def test_a_signup_with_a_certificate_runs_end_to_end_with_no_secret_at_all(
    emulator, demo, visitor, caplog
):
    caplog.set_level(logging.DEBUG)
    pending = start_certificate_signup(visitor, demo)
    page = visitor.client.get(CERTIFICATE_PAGE)
    pem = visitor.client.get(f"{CERTIFICATE_PAGE}.cer?format=pem")
    der = visitor.client.get(f"{CERTIFICATE_PAGE}.cer?format=der")

    certificate = x509.load_pem_x509_certificate(pem.content)
    assert x509.load_der_x509_certificate(der.content) == certificate
    assert pem["Content-Disposition"].startswith("attachment;")
    key = serialization.load_pem_private_key(private_key_of(pending).encode(), password=None)
    assert key.public_key().public_numbers() == certificate.public_key().public_numbers()
    thumbprint = certificates.load(pem.content.decode()).sha1_thumbprint
    assert thumbprint in page.content.decode()

    too_early = visitor.client.post(CERTIFICATE_PAGE)  # not uploaded yet: caught before Microsoft
    assert too_early.status_code == 400
    assert "does not know this certificate yet" in too_early.content.decode()
    assert authorize_requests(emulator) == 0

    emulator.upload_certificate(demo.client_id, pem.content.decode())
    started = visitor.client.post(CERTIFICATE_PAGE)
    assert started.status_code == 302
    done = visitor.follow(visitor.at_microsoft(started["Location"]))
    assert done.status_code == 302 and "/welcome" in done["Location"]

    app = EntraApp.objects.get()
    assert app.credential_kind == EntraApp.CredentialKind.CERTIFICATE
    assert app.certificate().sha1_thumbprint == thumbprint
    assert app.credential_expires_on == certificate.not_valid_after_utc.date()
    connection = DynamicsConnection.objects.select_related("account__entra_app").get()
    assert connection_check(connection=connection).ok  # a forced refresh, with the certificate

    secret_body = key_body(private_key_of_app(app))
    shown = [page, pem, der, too_early, visitor.client.get("/settings/connections")]
    for response in shown:
        assert secret_body[:64] not in response.content.decode(errors="replace")
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert secret_body[:64] not in logged


def private_key_of_app(app: EntraApp) -> str:
    return crypto.decrypt(app.credential_encrypted, context=app.credential_context()).reveal()


def test_the_admin_pages_never_show_the_private_key(emulator, demo, visitor, settings):
    from django.contrib.auth import get_user_model

    pending = start_certificate_signup(visitor, demo)
    emulator.upload_certificate(demo.client_id, pending.certificate_pem)
    visitor.follow(visitor.at_microsoft(visitor.client.post(CERTIFICATE_PAGE)["Location"]))
    app = EntraApp.objects.get()
    operator = get_user_model().objects.create_superuser("operator", password="Op-3r4tor!pw")
    visitor.client.force_login(operator)

    page = visitor.client.get(f"/admin/accounts/entraapp/{app.pk}/change/").content.decode()

    assert key_body(private_key_of_app(app))[:64] not in page
    assert app.credential_encrypted not in page


def connected_with_a_certificate(admin, emulator, demo):
    """The admin's connection switched to a product-made certificate (uploaded, proven)."""
    admin.client.post(f"/settings/connections/{admin.connection.pk}/certificate/new")
    pending = PendingAuthorization.objects.get()
    emulator.upload_certificate(demo.client_id, pending.certificate_pem)
    switch = admin.client.post(f"/settings/connections/{admin.connection.pk}/certificate")
    assert switch.status_code == 302, switch.content.decode()[:500]
    done = admin.follow(admin.at_microsoft(switch["Location"]))
    assert done["Location"] == "/settings/connections"
    return pending.certificate_pem


def test_a_rotation_keeps_the_old_credential_working_until_the_new_one_is_proven(
    admin, emulator, demo
):
    connection_url = f"/settings/connections/{admin.connection.pk}"
    before = stored_row(admin.connection)
    admin.client.post(f"{connection_url}/certificate/new")
    pending = PendingAuthorization.objects.get()

    assert stored_row(admin.connection) == before  # generated, not used yet
    assert connection_check(connection=admin.connection).ok  # the secret still works
    not_uploaded = admin.client.post(f"{connection_url}/certificate")
    assert not_uploaded.status_code == 400
    assert "does not know this certificate yet" in not_uploaded.content.decode()
    app_row = {k: v for k, v in stored_row(admin.connection).items() if k.startswith("app_")}
    assert app_row == {k: v for k, v in before.items() if k.startswith("app_")}

    emulator.upload_certificate(demo.client_id, pending.certificate_pem)
    switch = admin.client.post(f"{connection_url}/certificate")
    admin.follow(admin.at_microsoft(switch["Location"]))

    app = EntraApp.objects.get()
    assert app.credential_kind == EntraApp.CredentialKind.CERTIFICATE
    page = admin.client.get("/settings/connections").content.decode()
    assert certificates.load(pending.certificate_pem).sha1_thumbprint in page
    assert "client secret set on" in app.previous_credential
    assert "remove it from the app registration" in page
    assert connection_check(connection=admin.connection).ok

    admin.client.post(f"{connection_url}/previous-credential")
    assert (
        "remove it from the app registration"
        not in admin.client.get("/settings/connections").content.decode()
    )


def test_a_failed_switch_leaves_the_connection_byte_for_byte(admin, emulator, demo):
    connection_url = f"/settings/connections/{admin.connection.pk}"
    admin.client.post(f"{connection_url}/certificate/new")
    pending = PendingAuthorization.objects.get()
    emulator.upload_certificate(demo.client_id, pending.certificate_pem)
    before = stored_row(admin.connection)
    emulator.fault(endpoint="token", grant_type="authorization_code", aadsts=700027)

    switch = admin.client.post(f"{connection_url}/certificate")
    admin.follow(admin.at_microsoft(switch["Location"]))

    assert stored_row(admin.connection) == before
    assert EntraApp.objects.get().credential_kind == EntraApp.CredentialKind.SECRET


def test_a_certificate_can_be_switched_back_to_a_secret(admin, emulator, demo):
    connected_with_a_certificate(admin, emulator, demo)

    page = admin.reauthorize()

    app = EntraApp.objects.get()
    assert app.credential_kind == EntraApp.CredentialKind.SECRET
    assert app.certificate_pem == ""
    assert app.previous_credential.startswith("certificate ")
    assert "was re-authorized and works" in page.content.decode()


def test_the_expiry_is_read_from_the_certificate_and_warned_30_days_before(admin, demo):
    private_key, certificate = certificates.generate("short-lived", valid_days=20)
    app = EntraApp.objects.get()
    from lib.entra.types import AppCredentials

    app.store_credentials(
        AppCredentials(
            app.client_id, app.tenant_id, private_key=private_key, certificate_pem=certificate.pem
        ),
        expires_on=None,
    )
    app.save()

    page = admin.client.get("/settings/connections").content.decode()

    assert app.credential_expires_on == certificate.not_after.date()
    assert app.credential_expiry().warn
    assert "The certificate expires on" in page
    assert certificate.sha1_thumbprint in page


def test_a_pending_certificate_that_expired_is_not_offered(emulator, demo, visitor):
    pending = start_certificate_signup(visitor, demo)
    PendingAuthorization.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert visitor.client.get(CERTIFICATE_PAGE)["Location"] == SIGNUP_URL
    assert visitor.client.get(f"{CERTIFICATE_PAGE}.cer").status_code == 404


def test_the_key_icons_form_can_choose_a_certificate(admin, emulator, demo):
    before = authorize_requests(emulator)

    response = admin.submit_reauthorization(credential_kind="certificate", client_secret="")

    assert response.status_code == 302
    assert response["Location"] == f"/settings/connections/{admin.connection.pk}/certificate"
    pending = PendingAuthorization.objects.get()
    assert pending.certificate_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert pending.connection_id == admin.connection.pk
    page = admin.client.get(response["Location"]).content.decode()
    assert "Switch to this certificate" in page
    assert authorize_requests(emulator) == before  # nobody is sent to Microsoft before upload
