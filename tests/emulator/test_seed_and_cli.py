"""The emulator's seed file, command line and key files (each test starts its own process or
none at all)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509

import entra_emulator
from entra_emulator.seed import SeedError, load_seed
from entra_emulator.testing import EmulatorError, run_emulator
from tests.network_guard import allow_local_port

DEMO_SEED = Path(entra_emulator.__file__).with_name("demo_seed.json")
TENANT = "1bc0ba21-2a9c-4529-94eb-c52155e791b2"


def write_seed(tmp_path: Path, seed: dict) -> Path:
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    return path


def minimal_seed(**app_changes) -> dict:
    return {
        "tenants": [
            {
                "id": TENANT,
                "name": "Contoso",
                "domain": "contoso.onmicrosoft.com",
                "users": [
                    {
                        "oid": "49172b14-1a8c-42d6-9573-c096ee974413",
                        "upn": "admin@contoso.onmicrosoft.com",
                        "name": "Adele",
                    }
                ],
            }
        ],
        "apps": [
            {
                "client_id": "576c5a78-35db-4953-9ee1-2234cbc14d15",
                "tenant": TENANT,
                "redirect_uris": ["${PUBLIC_BASE_URL}/OAuth2"],
                **app_changes,
            }
        ],
        "dynamics_orgs": [
            {
                "url": "${EMULATOR_URL}",
                "tenant": TENANT,
                "organization_id": "213ea322-7757-4968-982d-58c7f489b563",
                "business_unit_id": "2b0180ac-7789-4dd6-98d8-78b98a36b5f4",
                "members": ["admin@contoso.onmicrosoft.com"],
            }
        ],
    }


def test_variables_are_expanded_from_the_environment_and_the_emulators_own_url(tmp_path):
    directory = load_seed(
        write_seed(tmp_path, minimal_seed()),
        emulator_url="https://127.0.0.1:9443",
        environ={"PUBLIC_BASE_URL": "https://app.example"},
    )

    [app] = directory.apps.values()
    assert app.redirect_uris == ("https://app.example/OAuth2",)
    assert list(directory.orgs) == ["https://127.0.0.1:9443"]


def test_the_demo_seed_loads(tmp_path):
    directory = load_seed(
        DEMO_SEED, emulator_url="https://127.0.0.1:8443", environ={"PUBLIC_BASE_URL": "http://x"}
    )

    assert {t.name for t in directory.tenants.values()} == {"Contoso", "Fabrikam"}
    [app] = directory.apps.values()
    assert app.multi_tenant and len(app.secrets) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"redirect_uris": ["${NOT_SET_ANYWHERE}/OAuth2"]},
            r"seed\.apps\[0\]\.redirect_uris\[0\]: environment variable NOT_SET_ANYWHERE",
        ),
        ({"client_id": "not-a-guid"}, r"apps\[0\]\.client_id: 'not-a-guid' is not a GUID"),
        (
            {"tenant": "00000000-0000-0000-0000-000000000000"},
            r"apps\[0\]\.tenant: no tenant with id 00000000-0000-0000-0000-000000000000",
        ),
        (
            {"assigned_users": ["ghost@contoso.onmicrosoft.com"]},
            r"apps\[0\]\.assigned_users: no user 'ghost@contoso.onmicrosoft.com'",
        ),
        ({"sign_in_audience": "Everyone"}, r"apps\[0\]\.sign_in_audience: must be one of"),
        ({"redirect_uri": "typo"}, r"apps\[0\]: unknown key\(s\) redirect_uri"),
    ],
)
def test_a_bad_seed_is_refused_with_a_message_that_names_the_place(tmp_path, changes, message):
    with pytest.raises(SeedError, match=message):
        load_seed(
            write_seed(tmp_path, minimal_seed(**changes)),
            emulator_url="https://127.0.0.1:8443",
            environ={"PUBLIC_BASE_URL": "https://app.example"},
        )


def test_a_bad_seed_stops_the_emulator_and_surfaces_the_reason(tmp_path):
    seed = write_seed(tmp_path, minimal_seed(redirect_uris=["${NOT_SET_ANYWHERE}/OAuth2"]))

    reason = r"(?s)exit code 2.*environment variable NOT_SET_ANYWHERE is not set"
    with pytest.raises(EmulatorError, match=reason), run_emulator(seed, tmp_path / "state"):
        pass


def test_without_the_test_api_its_paths_are_404_and_sigterm_exits_cleanly(tmp_path):
    state = tmp_path / "state"
    env = {"PUBLIC_BASE_URL": "http://127.0.0.1:8000"}

    with run_emulator(DEMO_SEED, state, env=env, test_api=False) as emu:
        allow_local_port(urlsplit(emu.url).port)
        response = requests.get(f"{emu.url}/_emulator/log", verify=emu.ca_path, timeout=10)
    first_ca = (state / "ca.pem").read_bytes()
    with run_emulator(DEMO_SEED, state, env=env, test_api=False) as again:
        pass

    assert response.status_code == 404
    assert emu.process.returncode == 0 and again.process.returncode == 0
    assert (state / "ca.pem").read_bytes() == first_ca  # reused, so trust survives restarts
    for name in ("ca-key.pem", "server-key.pem", "signing-key.pem"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate((state / "server.pem").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "::1"} <= {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
