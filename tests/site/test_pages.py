"""Public pages an operator or a visitor reaches without signing in."""

import pytest
from django.db import DatabaseError

from tests.network_guard import allow_local_port

pytestmark = pytest.mark.django_db


def test_the_landing_page_links_to_signup(client):
    response = client.get("/")

    assert response.status_code == 200
    assert 'href="/Dynamics/Signup"' in response.content.decode()


def test_healthz_reports_the_database_without_authentication(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok"}
    assert "no-cache" in response.headers["Cache-Control"]


def test_healthz_says_503_when_the_database_is_unreachable(client, monkeypatch):
    from accounts import views

    class BrokenConnection:
        def cursor(self):
            raise DatabaseError("connection refused")

    monkeypatch.setattr(views, "connection", BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_healthz_says_503_when_the_cache_is_unreachable(client, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    allow_local_port(1)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["cache"] == "unreachable"
    assert response.json()["database"] == "ok"


def test_row_37_pages_that_need_a_session_send_a_visitor_to_the_start_page(client):
    for url in ("/settings/connections", "/settings/members"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/?next=")


def test_a_form_posted_without_its_csrf_token_explains_what_to_do():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/Dynamics/Signup", {})

    assert response.status_code == 403
    assert "This form expired" in response.content.decode()


def test_a_crash_shows_a_friendly_page(client, monkeypatch):
    from accounts import views

    def crash(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "render", lambda *a, **kw: crash(a[0]))
    client.raise_request_exception = False

    response = client.get("/")

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
