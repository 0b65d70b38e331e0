"""Two gunicorn instances, one PostgreSQL, one Redis, one emulator: every flow started on one
instance completes on the other (one browser, one cookie jar: cookies ignore ports)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from entra_emulator.testing import run_emulator, sign_in
from lib.crypto import generate_key
from tests.demo import DEMO_SEED, Demo
from tests.network_guard import allow_local_port

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "many_processes"


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgres(sql: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as db:
        db.execute(sql)


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> Iterator[tuple[str, str, Demo]]:
    for port in (5432, 6379):
        allow_local_port(port)
    if not (answers(5432) and answers(6379)):
        pytest.skip("Needs PostgreSQL and Redis on 127.0.0.1 (CI has both).")
    ports = [free_port(), free_port()]
    for port in ports:
        allow_local_port(port)
    base = f"http://127.0.0.1:{ports[0]}"
    tmp = tmp_path_factory.mktemp("many")
    postgres(f"DROP DATABASE IF EXISTS {DATABASE}")
    postgres(f"CREATE DATABASE {DATABASE}")
    with run_emulator(DEMO_SEED, tmp / "emulator", env={"PUBLIC_BASE_URL": base}) as emu:
        for url in (emu.url, emu.browser_url):
            allow_local_port(urlsplit(url).port)
        env = {
            "PATH": os.environ["PATH"],
            # DEBUG only for the emulator's org URL (refused in production); all else as deployed.
            "DJANGO_DEBUG": "true",
            "DJANGO_SECRET_KEY": generate_key(),
            "FIELD_ENCRYPTION_KEYS": generate_key(),
            "PUBLIC_BASE_URL": base,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
            "CACHE_URL": "redis://127.0.0.1:6379/4",
            "ENTRA_AUTHORITY_HOST": emu.url,
            "ENTRA_CA_BUNDLE": emu.ca_path,
            "DYNAMICS_EXTRA_ALLOWED_ORIGINS": emu.url,
            "AUTH_RATE_LIMIT_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
            "VAR_DIR": str(tmp),
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        servers = [
            subprocess.Popen(
                [gunicorn, "--workers", "1", "--bind", f"127.0.0.1:{port}", "--no-control-socket"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in ports
        ]
        try:
            for port in ports:
                deadline = time.monotonic() + 30
                while not answers(port):
                    assert time.monotonic() < deadline, f"gunicorn on {port} did not start"
                    time.sleep(0.2)
            yield base, f"http://127.0.0.1:{ports[1]}", Demo.from_seed(org_url=emu.url)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=20)
            postgres(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def csrf_token(browser: requests.Session, url: str) -> str:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, url
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)


def on(instance: str, url: str) -> str:
    """The same URL, on another instance (as a load balancer may send it)."""
    parts = urlsplit(url)
    return f"{instance}{parts.path}?{parts.query}" if parts.query else f"{instance}{parts.path}"


def test_every_flow_started_on_one_instance_completes_on_the_other(instances):
    a, b, demo = instances
    browser = requests.Session()

    # A signup started on A completes on B.
    form = {
        "csrfmiddlewaretoken": csrf_token(browser, f"{a}/Dynamics/Signup"),
        "company_name": "Contoso Ltd",
        "phone": "+1 425 555 0100",
        "website": "https://www.contoso.example",
        "client_id": demo.client_id,
        "credential_kind": "secret",
        "client_secret": demo.client_secret,
        "org_url": demo.org_url,
    }
    started = browser.post(f"{a}/Dynamics/Signup", form, allow_redirects=False, timeout=10)
    callback = sign_in(browser, started.headers["Location"], demo.admin)
    done = browser.get(on(b, callback), allow_redirects=False, timeout=20)
    assert done.status_code == 302 and done.headers["Location"].endswith("/welcome")
    account_id = done.headers["Location"].split("/")[2]

    # A sign-in started on B completes on A.
    browser.post(f"{b}/signout", {"csrfmiddlewaretoken": csrf_token(browser, f"{b}/")}, timeout=10)
    token = csrf_token(browser, f"{b}/business/{account_id}")
    started = browser.post(
        f"{b}/business/{account_id}/signin", {"csrfmiddlewaretoken": token}, allow_redirects=False
    )
    callback = sign_in(browser, started.headers["Location"], demo.admin)
    done = browser.get(on(a, callback), allow_redirects=False, timeout=20)
    assert done.status_code == 302 and done.headers["Location"] == f"/business/{account_id}"

    # A re-authorization started on A completes on B.
    page = browser.get(f"{a}/settings/connections", timeout=10).text
    reauthorize = re.search(r'href="(/settings/connections/\d+/reauthorize)"', page).group(1)
    form = {
        "csrfmiddlewaretoken": csrf_token(browser, f"{a}{reauthorize}"),
        "client_id": demo.client_id,
        "credential_kind": "secret",
        "client_secret": demo.second_client_secret,
        "org_url": demo.org_url,
    }
    started = browser.post(f"{a}{reauthorize}", form, allow_redirects=False, timeout=10)
    callback = sign_in(browser, started.headers["Location"], demo.admin)
    done = browser.get(on(b, callback), allow_redirects=False, timeout=20)
    assert done.status_code == 302 and done.headers["Location"] == "/settings/connections"
    assert "was re-authorized and works" in browser.get(f"{a}/settings/connections").text
