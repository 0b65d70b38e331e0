"""Starting sign-ins faster than a person could is refused for a minute."""

import pytest
from django.test import Client

from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db


def post_signups(client: Client, demo, count: int, **extra) -> list[int]:
    return [
        client.post(SIGNUP_URL, signup_form(demo, client_id="not-a-guid"), **extra).status_code
        for _ in range(count)
    ]


def test_the_limit_refuses_the_next_post_with_429_and_retry_after(entra_emulator, demo, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 3
    client = Client()

    statuses = post_signups(client, demo, 4)

    assert statuses == [200, 200, 200, 429]
    refused = client.post(SIGNUP_URL, signup_form(demo))
    assert 0 < int(refused["Retry-After"]) <= 60
    assert "Too many attempts" in refused.content.decode()
    assert client.get(SIGNUP_URL).status_code == 200  # reading the page is never limited


def test_each_client_address_has_its_own_count(entra_emulator, demo, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 2

    first = post_signups(Client(REMOTE_ADDR="192.0.2.1"), demo, 3)
    second = post_signups(Client(REMOTE_ADDR="192.0.2.2"), demo, 2)

    assert first == [200, 200, 429]
    assert second == [200, 200]


def test_a_client_cannot_dodge_the_limit_with_its_own_forwarded_for(entra_emulator, demo, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 2
    client = Client()

    statuses = [
        client.post(
            SIGNUP_URL,
            signup_form(demo, client_id="x"),
            headers={"x-forwarded-for": f"198.51.100.{n}"},
        ).status_code
        for n in range(3)
    ]

    assert statuses == [200, 200, 429]


def test_behind_a_trusted_proxy_the_address_it_saw_is_counted(entra_emulator, demo, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 1
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client()

    def post(forwarded_for: str) -> int:
        return client.post(
            SIGNUP_URL, signup_form(demo, client_id="x"), headers={"x-forwarded-for": forwarded_for}
        ).status_code

    assert [post("203.0.113.7"), post("203.0.113.7"), post("203.0.113.8")] == [200, 429, 200]


def test_sign_in_starts_are_limited_too(account, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 2
    client = Client()

    statuses = [client.post(f"/business/{account.account_id}/signin").status_code for _ in range(3)]

    assert statuses == [302, 302, 429]
