"""Shared fixtures: the real local Entra ID emulator, a network guard, and factories.

The emulator runs once per test session as a subprocess on free ports, over HTTPS with its own
CA; the product is pointed at it through settings, exactly as `make run` does. Each test starts
from the seed (`emulator.reset()`) and from empty per-process MSAL caches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from entra_emulator.testing import run_emulator
from lib import entra
from tests.demo import DEMO_SEED, Demo
from tests.network_guard import allow_local_port, guard_network

# --- The emulator ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def network_guard() -> Iterator[None]:
    """Any connection to something other than the emulator (or a server a test started)
    fails the test."""
    with guard_network():
        yield


@pytest.fixture(scope="session", autouse=True)
def static_files_without_collectstatic() -> Iterator[None]:
    """Production uses WhiteNoise's manifest storage, which needs `collectstatic`; tests serve
    the source files as development does."""
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
        WHITENOISE_AUTOREFRESH=True,
        WHITENOISE_USE_FINDERS=True,
    ):
        yield


@pytest.fixture(scope="session")
def entra_emulator(tmp_path_factory, network_guard):
    """The emulator process with the demo seed; the product's settings point at it."""
    state_dir = tmp_path_factory.mktemp("emulator")
    with run_emulator(
        DEMO_SEED, state_dir, env={"PUBLIC_BASE_URL": "http://testserver"}, test_api=True
    ) as emu:
        for url in (emu.url, emu.browser_url):
            allow_local_port(urlsplit(url).port)
        localhost_origin = emu.url.replace("127.0.0.1", "localhost")
        with override_settings(
            ENTRA_AUTHORITY_HOST=emu.url,
            ENTRA_CA_BUNDLE=str(emu.ca_path),
            DYNAMICS_EXTRA_ALLOWED_ORIGINS=[emu.url, localhost_origin],
        ):
            yield emu


@pytest.fixture
def emulator(entra_emulator):
    """The emulator, reset to its seed, with the product's MSAL caches emptied."""
    entra_emulator.reset()
    entra.reset_process_caches()
    yield entra_emulator
    entra.reset_process_caches()


@pytest.fixture(scope="session")
def demo(entra_emulator) -> Demo:
    return Demo.from_seed(org_url=entra_emulator.url)


# --- People and accounts, made through the product ------------------------------------------


@pytest.fixture
def person(db, emulator, demo):
    """A factory of people: ``person(email)`` (the demo admin by default)."""
    from tests.people import Person

    return functools.partial(Person, demo)


@pytest.fixture
def visitor(person):
    """The demo admin before signing up: signed in nowhere yet."""
    return person()


@pytest.fixture
def admin(person):
    """The demo admin, who signed up the account ``Contoso Ltd`` and is signed in to it."""
    admin = person()
    response = admin.sign_up()
    assert response.status_code == 302, response.content.decode()[:2000]
    return admin


@pytest.fixture
def account(admin):
    """The account the demo admin signed up."""
    return admin.account


@pytest.fixture
def member(person, account, demo):
    """The demo member, signed in to ``account`` (their first sign-in made them a member)."""
    member = person(demo.member)
    assert member.sign_in(account).status_code == 302
    return member


@pytest.fixture
def other_account(person):
    """A second account of the same tenant, signed up by its own admin in another browser."""
    other = person()
    assert other.sign_up(company_name="Other Co").status_code == 302
    return other.account
