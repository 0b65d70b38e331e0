"""Starting sign-ins faster than a person could is refused for a minute."""

import socket
import threading
import uuid

import pytest
from django.db import connection as db_connection
from django.test import Client

from tests.network_guard import allow_local_port
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db


def post_signups(client: Client, demo, count: int, **extra) -> list[int]:
    return [
        client.post(SIGNUP_URL, signup_form(demo, client_id="not-a-guid"), **extra).status_code
        for _ in range(count)
    ]


def test_row_69_the_limit_refuses_the_next_post_with_429_and_retry_after(
    entra_emulator, demo, settings
):
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


def test_row_69_behind_a_trusted_proxy_the_address_it_saw_is_counted(
    entra_emulator, demo, settings
):
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


def test_an_ipv6_client_is_counted_by_its_64_block(entra_emulator, demo, settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 2

    one_block = [
        post_signups(Client(REMOTE_ADDR=f"2001:db8:1:2::{n}"), demo, 1)[0] for n in range(1, 4)
    ]
    next_block = post_signups(Client(REMOTE_ADDR="2001:db8:1:3::1"), demo, 1)

    assert one_block == [200, 200, 429]
    assert next_block == [200]


def redis_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["database", "redis"])
def counter_store(request, settings):
    """The limiter's two stores: the database table (its row lock is what makes it atomic, so
    PostgreSQL: SQLite has one writer at a time anyway) and Redis."""
    if request.param == "database" and db_connection.vendor == "sqlite":
        pytest.skip("SQLite serializes every write; CI runs this on PostgreSQL.")
    if request.param == "redis":
        allow_local_port(6379)
        if not redis_answers():
            pytest.skip("No Redis at 127.0.0.1:6379; CI starts one.")
        settings.CACHE_URL = "redis://127.0.0.1:6379/15"
    return request.param


@pytest.mark.django_db(transaction=True)
def test_40_simultaneous_posts_let_exactly_the_limit_through(
    entra_emulator, demo, settings, counter_store
):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 7
    barrier = threading.Barrier(40)
    statuses: list[int] = []
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"

    def post() -> None:
        client = Client(REMOTE_ADDR=address)
        barrier.wait()
        try:
            statuses.append(post_signups(client, demo, 1)[0])
        finally:
            db_connection.close()

    threads = [threading.Thread(target=post) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(statuses) == 40
    assert statuses.count(200) == 7
    assert statuses.count(429) == 33


class TestAdminLogin:
    @pytest.fixture
    def operator(self, db):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_superuser("operator", "op@example.com", "Right-1!")

    def log_in(self, password: str, *, username: str = "operator", address: str = "192.0.2.9"):
        return Client(REMOTE_ADDR=address).post(
            "/admin/login/", {"username": username, "password": password}
        )

    def test_wrong_passwords_are_refused_after_five_even_with_the_right_one(self, operator):
        statuses = [self.log_in("wrong").status_code for _ in range(5)]
        refused = self.log_in("Right-1!")

        assert statuses == [200] * 5
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 15 * 60

    def test_the_user_name_is_limited_across_addresses(self, operator):
        for n in range(5):
            self.log_in("wrong", address=f"198.51.100.{n}")

        assert self.log_in("Right-1!", address="198.51.100.77").status_code == 429

    def test_an_address_is_limited_across_user_names(self, operator):
        for n in range(5):
            self.log_in("wrong", username=f"guess{n}")

        assert self.log_in("Right-1!").status_code == 429

    def test_the_right_password_within_the_limit_logs_in(self, operator):
        for _ in range(4):
            self.log_in("wrong")

        assert self.log_in("Right-1!").status_code == 302
