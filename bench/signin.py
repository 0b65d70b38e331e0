"""Benchmark: what one "Sign in with Active Directory" costs, end to end on this machine.

Starts the local Entra ID emulator, creates an account on an in-memory SQLite database, then
signs the demo member in N times (each in a fresh browser, so each is a full sign-in). Reports
the time of the app's two requests (start and /OAuth2 callback) and how many Entra ID calls each
sign-in made, from the emulator's own log. Run with `make bench` (N=50 by default).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(rounds: int) -> None:
    from cryptography.fernet import Fernet

    os.environ.update(
        DJANGO_SETTINGS_MODULE="bizible_site.settings",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 40,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        PUBLIC_BASE_URL="http://testserver",
        ALLOWED_HOSTS="testserver",
        DATABASE_URL="sqlite://:memory:",
        LOG_LEVEL="WARNING",
        AUTH_RATE_LIMIT_PER_MINUTE="0",  # 50 sign-ins from one address in a minute, on purpose
    )
    import django

    django.setup()
    import requests
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    from entra_emulator.testing import run_emulator, sign_in
    from tests.demo import DEMO_SEED, Demo
    from tests.factories import connected_account

    setup_test_environment()
    call_command("migrate", verbosity=0)
    with (
        tempfile.TemporaryDirectory() as state_dir,
        run_emulator(
            DEMO_SEED, Path(state_dir), env={"PUBLIC_BASE_URL": "http://testserver"}
        ) as emulator,
        override_settings(ENTRA_AUTHORITY_HOST=emulator.url, ENTRA_CA_BUNDLE=emulator.ca_path),
    ):
        demo = Demo.from_seed(org_url=emulator.url)
        account = connected_account(demo, "Bench")

        starts, callbacks = [], []
        for _ in range(rounds):
            client, browser = Client(), requests.Session()
            began = time.perf_counter()
            response = client.post(f"/business/{account.account_id}/signin")
            starts.append(time.perf_counter() - began)
            redirect = urlsplit(sign_in(browser, response["Location"], demo.member))
            began = time.perf_counter()
            done = client.get(f"{redirect.path}?{redirect.query}")
            callbacks.append(time.perf_counter() - began)
            assert done.status_code == 302, done.content[:300]
        log = emulator.log()

    def summary(samples: list[float]) -> str:
        ordered = sorted(samples)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"

    endpoints = [entry["endpoint"] for entry in log]
    print(f"{rounds} sign-ins")
    print(f"start (POST /business/<id>/signin): {summary(starts)}")
    print(f"callback (GET /OAuth2?identityOnly=true): {summary(callbacks)}")
    print(
        f"Entra ID calls per sign-in: token {endpoints.count('token') / rounds:.2f}, "
        f"discovery {endpoints.count('discovery') / rounds:.2f}, "
        f"jwks {endpoints.count('jwks') / rounds:.2f} "
        f"(totals: {endpoints.count('discovery')} discovery, {endpoints.count('jwks')} jwks)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
