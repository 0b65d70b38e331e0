"""lib/dynamics: which URLs count as Dynamics orgs, and who is never contacted."""

import socket

import pytest
import requests

from lib import dynamics
from lib.secret import Secret
from tests.network_guard import OutboundConnectionBlocked


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
def test_row_54_anything_else_is_refused_with_a_reason(settings, raw):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []

    with pytest.raises(dynamics.InvalidOrgUrl) as raised:
        dynamics.normalize_org_url(raw)
    assert str(raised.value)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "169.254.169.254",
        "::1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:10.0.0.5",  # IPv4-mapped
    ],
)
def test_row_55_an_org_host_resolving_to_a_private_address_is_never_contacted(
    settings, monkeypatch, address
):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kw: [(family, socket.SOCK_STREAM, 6, "", (address, port))],
    )
    sent = []
    monkeypatch.setattr(requests.Session, "send", lambda *a, **kw: sent.append(a))

    with pytest.raises(dynamics.DynamicsError) as raised:
        dynamics.who_am_i("https://contoso.crm.dynamics.com", Secret("token"))

    assert raised.value.code == "non_public_address"
    assert sent == []


def test_row_55_a_second_dns_answer_is_never_asked_for_dns_rebinding(settings, monkeypatch):
    """The first answer is public and checked; a rebinding server would answer 127.0.0.1 next.
    The connection goes to the checked address (the network guard stops it there)."""
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, port, *args, **kwargs):
        if host == "contoso.crm.dynamics.com":
            address = next(answers)
        elif host == "93.184.216.34":
            address = host
        else:
            return real_getaddrinfo(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)

    with pytest.raises(OutboundConnectionBlocked, match=r"93\.184\.216\.34:443"):
        dynamics.who_am_i("https://contoso.crm.dynamics.com", Secret("token"))


@pytest.mark.parametrize(("name", "trusted"), [("localhost", True), ("contoso.example", False)])
def test_the_pinned_connection_checks_the_certificate_against_the_orgs_name(
    entra_emulator, name, trusted
):
    """Connecting to the checked address must not weaken TLS: the certificate must name the
    host the customer typed (the emulator's names localhost, not contoso.example)."""
    import requests

    port = entra_emulator.url.rsplit(":", 1)[1]
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", dynamics.PinnedAdapter(name))
    url = f"https://127.0.0.1:{port}/organizations/v2.0/.well-known/openid-configuration"

    if trusted:
        assert session.get(url, verify=entra_emulator.ca_path, timeout=5).status_code == 200
    else:
        with pytest.raises(requests.exceptions.SSLError):
            session.get(url, verify=entra_emulator.ca_path, timeout=5)
