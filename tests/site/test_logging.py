"""Log lines as operators see them: formatted, one line per event, no secret in any."""

import logging

import pytest
from django.test import Client

from bizible_site.logging import KeyValueFormatter

pytestmark = pytest.mark.django_db


def formatted(records: list[logging.LogRecord]) -> str:
    formatter = KeyValueFormatter()
    return "\n".join(formatter.format(record) for record in records)


def test_a_refused_callback_logs_its_path_but_not_its_code_or_state(caplog, entra_emulator):
    caplog.set_level("DEBUG")

    response = Client().get("/OAuth2?identityOnly=true&state=some-state&code=SECRET-CODE-123")

    assert response.status_code == 400
    text = formatted(caplog.records)
    assert "GET /OAuth2" in text
    assert "SECRET-CODE-123" not in text
    assert "some-state" not in text


def test_extra_fields_become_key_value_pairs():
    record = logging.LogRecord(
        "dynamics_connect.auth", logging.INFO, __file__, 1, "signed in", None, None
    )
    record.account = "abc"
    record.code = "AADSTS50105"
    record.detail = "two words"

    line = KeyValueFormatter().format(record)

    assert 'msg="signed in"' in line
    assert "account=abc code=AADSTS50105" in line
    assert 'detail="two words"' in line
