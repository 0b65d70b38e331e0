"""connections/dynamics.py: which URLs count as Dynamics orgs, and who is never contacted."""

import socket

import pytest

from lib import dynamics
from lib.secret import Secret


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://contoso.crm.dynamics.com", "https://contoso.crm.dynamics.com"),
        ("https://Contoso.CRM4.Dynamics.com/", "https://contoso.crm4.dynamics.com"),
        ("https://contoso.api.crm11.dynamics.com", "https://contoso.api.crm11.dynamics.com"),
        ("https://contoso.crm.microsoftdynamics.us", "https://contoso.crm.microsoftdynamics.us"),
        ("https://contoso.crm.dynamics.cn", "https://contoso.crm.dynamics.cn"),
        ("https://contoso.crm.dynamics.com:443", "https://contoso.crm.dynamics.com"),
    ],
)
def test_dynamics_org_urls_are_accepted_and_normalised(settings, raw, expected):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []

    assert dynamics.normalize_org_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "http://contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com.evil.example",
        "https://evil.example#.crm.dynamics.com",
        "https://contoso.crm.dynamics.com@127.0.0.1",
        "https://127.0.0.1\\@contoso.crm.dynamics.com",
        "https://contoso.crm.dynamics.com:8443",
        "https://contoso.crm.dynamics.com./",
        "https://contoso\uff0ecrm\uff0edynamics\uff0ecom",
        "https://localhost",
        "https://169.254.169.254",
        "https://[::1]",
        "file:///etc/passwd",
        "https://contoso.crm.dynamics.com/api/data",
        "javascript:alert(1)",
        "",
    ],
)
def test_anything_else_is_refused_with_a_reason(settings, raw):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []

    with pytest.raises(dynamics.InvalidOrgUrl) as raised:
        dynamics.normalize_org_url(raw)
    assert str(raised.value)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1"])
def test_an_org_host_resolving_to_a_private_address_is_never_contacted(
    settings, monkeypatch, address
):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(
        dynamics.socket,
        "getaddrinfo",
        lambda host, port: [(family, socket.SOCK_STREAM, 6, "", (address, port))],
    )
    sent = []
    monkeypatch.setattr(dynamics.requests, "get", lambda *a, **kw: sent.append(a))

    with pytest.raises(dynamics.DynamicsError) as raised:
        dynamics.who_am_i("https://contoso.crm.dynamics.com", Secret("token"))

    assert raised.value.code == "non_public_address"
    assert sent == []
