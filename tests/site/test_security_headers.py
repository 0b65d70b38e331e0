"""Headers and error pages: nothing framed, nothing loaded from elsewhere, no secret shown."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from connections import pending
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/", SIGNUP_URL, "/business/AAAAAAAAAAAAAAAA"])
def test_row_66_pages_forbid_framing_and_foreign_content(client, url):
    response = client.get(url)

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_row_45_a_crash_during_signup_shows_no_secret_even_on_the_debug_page(
    entra_emulator, demo, settings, monkeypatch
):
    settings.DEBUG = True

    def crash(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(pending, "pending_create", crash)
    client = Client(raise_request_exception=False)

    response = client.post(SIGNUP_URL, signup_form(demo))

    assert response.status_code == 500
    assert "database went away" in response.content.decode()  # the technical page, indeed
    assert demo.client_secret not in response.content.decode()


def test_row_67_a_host_header_that_is_not_allowed_is_refused(client):
    response = client.get("/", headers={"host": "evil.example"})

    assert response.status_code == 400


def test_row_45_a_crash_during_reauthorization_shows_no_secret_either(
    admin, demo, settings, monkeypatch
):
    client = admin.client
    settings.DEBUG = True

    def crash(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(pending, "pending_create", crash)
    client.raise_request_exception = False
    connection_id = client.get("/settings/connections").context["connection"].pk

    response = client.post(
        f"/settings/connections/{connection_id}/reauthorize",
        {
            "client_id": demo.client_id,
            "credential_kind": "secret",
            "client_secret": demo.second_client_secret,
            "org_url": demo.org_url,
        },
    )

    assert response.status_code == 500
    assert demo.second_client_secret not in response.content.decode()


def test_row_45_a_crash_inside_the_callback_shows_no_secret_or_token(
    visitor, demo, settings, monkeypatch
):
    from lib import dynamics

    def crash(org_url, access_token):
        raise RuntimeError("WhoAmI client crashed")

    monkeypatch.setattr(dynamics, "who_am_i", crash)
    visitor.client.raise_request_exception = False
    redirect = visitor.at_microsoft(visitor.submit_signup())
    settings.DEBUG = True

    response = visitor.follow(redirect)

    page = response.content.decode()
    assert response.status_code == 500
    assert "WhoAmI client crashed" in page  # the technical page, indeed
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    assert demo.client_secret not in page
    assert code not in page
    assert "eyJ" not in page  # no JWT, nor the base64 JSON of client_info


def test_row_45_error_reports_hide_the_passwords_in_database_and_cache_urls(settings):
    from bizible_site.reporting import AlwaysSafeExceptionReporterFilter

    settings.DATABASE_URL = "postgres://app:db-pass-123@db.internal:5432/dynamics"
    settings.CACHE_URL = "redis://:cache-pass-456@cache.internal:6379/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": settings.CACHE_URL,
        }
    }

    shown = repr(AlwaysSafeExceptionReporterFilter().get_safe_settings())

    assert "db-pass-123" not in shown and "cache-pass-456" not in shown
    assert "PUBLIC_BASE_URL" in shown  # the rest stays readable
