"""What a returning member's sign-in costs in SQL beside the framework's own floors, at one
account and at ten thousand: the start stores one flow row, the callback claims it, finds the
app and the membership with its user, and leaves the rest to Django's session and login."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from tests.bulk import add_accounts

pytestmark = pytest.mark.django_db


def statements(call, into: list | None = None) -> tuple[int, list[str]]:
    """How many SQL statements ``call`` makes, and which; its result goes to ``into``."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    if into is not None:
        into.append(result)
    sql = [query["sql"] for query in captured.captured_queries]
    return len(sql), sql


@pytest.fixture
def floors(settings):
    """Statements of the floor views (bench/urls.py): a new session holding one value, and
    auth.login() in a browser that has a session already (as the callback's browser has)."""
    settings.ROOT_URLCONF = "bench.urls"
    User.objects.create_user("floor", password=None)
    browser = Client()
    session, _ = statements(lambda: browser.get("/floor/session"))
    login, login_sql = statements(lambda: browser.get("/floor/login"))
    return {"session": session, "login": login, "login_sql": login_sql}


@pytest.mark.parametrize("accounts", [1, 10_000])
def test_a_returning_members_sign_in_costs_its_floor_and_a_few_statements(
    person, account, member, demo, settings, floors, accounts
):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 0  # the limiter's own counter is tested on its own
    add_accounts(accounts - 1)
    browser = person(demo.member)  # a new browser: the member has signed in before

    authorize_url: list[str] = []
    start, start_sql = statements(lambda: browser.start_sign_in(account), into=authorize_url)
    callback_url = browser.at_microsoft(authorize_url[0])
    response: list = []
    callback, callback_sql = statements(lambda: browser.follow(callback_url), into=response)

    assert response[0].status_code == 302
    assert response[0]["Location"] == f"/business/{account.account_id}"

    # The start: the account, then one INSERT of the flow (none of the cache's five).
    assert start == floors["session"] + 2, start_sql
    # The callback: claim the flow, the app with its account, the membership with its user;
    # the floor's own user lookup is one of those.
    assert callback == floors["login"] + 2, callback_sql
    assert sum(sql.startswith("DELETE FROM entra_started_flow") for sql in callback_sql) == 1
    if connection.vendor == "sqlite":  # the only backend whose BEGINs show as statements
        own_transactions = sum(sql == "BEGIN" for sql in callback_sql) - sum(
            sql == "BEGIN" for sql in floors["login_sql"]
        )
        assert own_transactions == 0
