"""Benchmark: what one "Sign in with Active Directory" costs, end to end on this machine.

Starts the local Entra ID emulator, signs an account up on an in-memory SQLite database, then
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(rounds: int) -> None:
    from lib.crypto import generate_key

    os.environ.update(
        DJANGO_SETTINGS_MODULE="bizible_site.settings",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 40,
        FIELD_ENCRYPTION_KEYS=generate_key(),
        PUBLIC_BASE_URL="http://testserver",
        ALLOWED_HOSTS="testserver",
        DATABASE_URL="sqlite://:memory:",
        LOG_LEVEL="WARNING",
        AUTH_RATE_LIMIT_PER_MINUTE="0",  # 50 sign-ins from one address in a minute, on purpose
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import override_settings, setup_test_environment

    from entra_emulator.testing import run_emulator
    from tests.demo import DEMO_SEED, Demo
    from tests.people import Person

    setup_test_environment()
    call_command("migrate", verbosity=0)
    with (
        tempfile.TemporaryDirectory() as state_dir,
        run_emulator(
            DEMO_SEED, Path(state_dir), env={"PUBLIC_BASE_URL": "http://testserver"}
        ) as emulator,
        override_settings(
            ENTRA_AUTHORITY_HOST=emulator.url,
            ENTRA_CA_BUNDLE=emulator.ca_path,
            DYNAMICS_EXTRA_ALLOWED_ORIGINS=[emulator.url],
        ),
    ):
        demo = Demo.from_seed(org_url=emulator.url)
        admin = Person(demo)
        assert admin.sign_up(company_name="Bench").status_code == 302
        account = admin.account
        signup_calls = len(emulator.log())

        starts, callbacks = [], []
        for _ in range(rounds):
            member = Person(demo, demo.member)  # a fresh browser: a full sign-in each time
            began = time.perf_counter()
            authorize_url = member.start_sign_in(account)
            starts.append(time.perf_counter() - began)
            redirect = member.at_microsoft(authorize_url)
            began = time.perf_counter()
            done = member.follow(redirect)
            callbacks.append(time.perf_counter() - began)
            assert done.status_code == 302, done.content[:300]
        log = emulator.log()[signup_calls:]

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
