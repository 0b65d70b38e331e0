"""Whatever a browser sends in one field of the signup or re-authorization form, the answer is
a page or a redirect, never a 500 (hypothesis: a few hundred values per field)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db

# Any text a browser can send as UTF-8 (lone surrogates cannot be encoded), long or short,
# plus the shapes that reach deeper: URL-, GUID- and secret-like values.
VALUES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=400),
    st.from_regex(r"https?://[a-z0-9.\-@:\[\]%]{0,60}(/[^ ]{0,20})?", fullmatch=True),
    st.uuids().map(str),
    st.text("abcdef0123456789-{}~._", min_size=30, max_size=50),
)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def no_rate_limit(settings):
    settings.AUTH_RATE_LIMIT_PER_MINUTE = 0


@pytest.mark.parametrize(
    "field", ["company_name", "phone", "website", "client_id", "client_secret", "org_url"]
)
def test_no_signup_field_value_gives_a_500(visitor, demo, no_rate_limit, field):
    @FUZZ
    @given(value=VALUES)
    def post(value: str) -> None:
        response = visitor.client.post(SIGNUP_URL, signup_form(demo, **{field: value}))
        assert response.status_code in (200, 302), (field, value)

    post()


@pytest.mark.parametrize("field", ["client_id", "client_secret", "org_url", "secret_expires_on"])
def test_no_reauthorization_field_value_gives_a_500(admin, demo, no_rate_limit, field):
    url = admin.reauthorize_url()
    good = {
        "client_id": demo.client_id,
        "credential_kind": "secret",
        "client_secret": demo.second_client_secret,
        "org_url": demo.org_url,
    }

    @FUZZ
    @given(value=VALUES)
    def post(value: str) -> None:
        response = admin.client.post(url, {**good, field: value})
        assert response.status_code in (200, 302), (field, value)

    post()
