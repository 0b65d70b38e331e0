"""Log lines as operators see them: formatted, one line per event, no secret in any."""

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

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


FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ ]*)')


@pytest.mark.parametrize(
    "hostile",
    ['x" outcome="success', "x\r\nlevel=info outcome=success", 'a\\" b', "\u2028forged"],
)
def test_a_logged_value_can_neither_forge_a_field_nor_start_a_line(hostile):
    record = logging.LogRecord(
        "dynamics_connect.auth", logging.WARNING, __file__, 1, "m", None, None
    )
    record.code = hostile
    record.outcome = "failure"

    line = KeyValueFormatter().format(record)

    assert len(line.splitlines()) == 1 and "\u2028" not in line
    fields = FIELD.findall(line)
    assert [value for key, value in fields if key == "outcome"] == ["failure"]
    assert [key for key, _ in fields].count("level") == 1


def test_a_hostile_error_in_a_callback_is_logged_harmlessly_and_sign_in_still_works(
    person, account, demo, caplog
):
    attacker = person(demo.outsider)
    state = parse_qs(urlsplit(attacker.start_sign_in(account)).query)["state"][0]
    hostile = 'x\r\nInjected: y" outcome="success'

    refused = attacker.client.get(
        "/OAuth2",
        {"identityOnly": "true", "state": state, "error": hostile, "error_description": hostile},
    )

    assert refused.status_code == 400
    text = formatted(caplog.records)
    assert "Injected" not in text and 'outcome="success' not in text
    assert any(getattr(r, "code", "") == "invalid_error" for r in caplog.records)
    assert person(demo.member).sign_in(account).status_code == 302


@pytest.mark.parametrize("hostile", ['x" outcome="success', 'x\r\n{"level": "info"}', "\u2028"])
def test_the_json_format_is_one_object_per_line_with_the_same_fields(hostile):
    from bizible_site.logging import JsonFormatter

    record = logging.LogRecord(
        "dynamics_connect.auth", logging.WARNING, __file__, 1, "m", None, None
    )
    record.code = hostile
    record.outcome = "failure"
    record.attempt = 2

    line = JsonFormatter().format(record)

    assert len(line.splitlines()) == 1 and "\u2028" not in line
    fields = json.loads(line)
    assert fields["code"] == hostile and fields["outcome"] == "failure"
    assert fields["attempt"] == 2 and fields["level"] == "warning"


def test_each_auth_event_of_a_sign_in_carries_its_duration(member, account, person, demo):
    """The console handler's filter adds duration_ms (since the request began) to event lines."""
    from bizible_site.logging import AuthEventDurationFilter

    lines: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record)

    handler = Keep()
    handler.addFilter(AuthEventDurationFilter())
    auth = logging.getLogger("dynamics_connect.auth")
    auth.addHandler(handler)
    try:
        assert person(demo.member).sign_in(account).status_code == 302
        logging.getLogger("dynamics_connect.auth").info("outside a request", extra={"event": "x"})
    finally:
        auth.removeHandler(handler)

    signed_in = next(r for r in lines if getattr(r, "event", "") == "sign_in")
    assert signed_in.outcome == "success"
    assert 0 < signed_in.duration_ms < 10_000
    assert "duration_ms=" in formatted([signed_in])
    assert not hasattr(lines[-1], "duration_ms")  # no request, no duration
