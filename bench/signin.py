"""Benchmark: what one "Sign in with Active Directory" costs, and what the framework's floors
cost on the same stack, in-process on this machine (`make bench`, N=50 by default).

Starts the local Entra ID emulator and an in-memory SQLite database, signs an account up, then:
- signs the demo member in N times, each in a fresh browser (a full sign-in), timing the start
  (POST /business/<id>/signin) and the /OAuth2 callback, the callback's own time (minus the
  wait on the emulator's token endpoint) and the SQL statements of each;
- times the floors (a bare view, a view storing one value in a new session, a view calling
  django.contrib.auth.login) and gives each step as a ratio to its floor;
- times the account home and the Connections page at 1, 100 and 10,000 accounts, with queries;
- counts Entra ID requests per sign-in from the emulator's log, new TLS connections to it per
  sign-in (the first, then the rest), and the peak RSS.
Prints a Markdown table and writes bench/results.json.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results.json"


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def p95_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2)


def timed(call: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


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
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings, setup_test_environment

    from entra_emulator.testing import run_emulator
    from lib.entra import http as entra_http
    from tests.demo import DEMO_SEED, Demo
    from tests.people import Person

    setup_test_environment()
    call_command("migrate", verbosity=0)
    token_wait: list[float] = []
    post = entra_http.http_client.post

    def timed_post(*args, **kwargs):
        took, response = timed(lambda: post(*args, **kwargs))
        token_wait.append(took)
        return response

    entra_http.http_client.post = timed_post
    # New TLS connections from the app to Entra ID (the emulator's API port), per round.
    import urllib3.connection

    tls_connects: list[tuple[str, int]] = []
    connect = urllib3.connection.HTTPSConnection.connect

    def counted_connect(self):
        tls_connects.append((self.host, self.port))
        return connect(self)

    urllib3.connection.HTTPSConnection.connect = counted_connect
    with (
        tempfile.TemporaryDirectory() as state_dir,
        run_emulator(
            DEMO_SEED, Path(state_dir), env={"PUBLIC_BASE_URL": "http://testserver"}
        ) as emulator,
        override_settings(
            ENTRA_AUTHORITY_HOST=emulator.url,
            ENTRA_CA_BUNDLE=emulator.ca_path,
            DYNAMICS_EXTRA_ALLOWED_ORIGINS=[emulator.url],
            ROOT_URLCONF="bench.urls",
            # Pages link their stylesheet: serve the source files, as the tests do, so that
            # no `collectstatic` is needed (production's manifest storage wants one).
            STORAGES={
                "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            },
        ),
    ):
        demo = Demo.from_seed(org_url=emulator.url)
        admin = Person(demo)
        assert admin.sign_up(company_name="Bench").status_code == 302
        account = admin.account
        log_start = len(emulator.log())

        # One test client (its handler loads the middleware once, as a process does); each
        # round clears its cookies and takes a new emulator browser: a full sign-in each time.
        client = Client()

        def fresh_browser() -> Client:
            client.cookies = SimpleCookie()
            return client

        steps: dict[str, list[float]] = {"start": [], "callback": [], "callback_own": []}
        queries: dict[str, int] = {}
        entra = (urlsplit(emulator.url).hostname, urlsplit(emulator.url).port)
        tls_per_round: list[int] = []
        for _ in range(rounds):
            tls_before = tls_connects.count(entra)
            member = Person(demo, demo.member, client=fresh_browser())
            with CaptureQueriesContext(connection) as start_queries:
                took, authorize_url = timed(lambda: member.start_sign_in(account))  # noqa: B023
            steps["start"].append(took)
            redirect = member.at_microsoft(authorize_url)
            token_wait.clear()
            with CaptureQueriesContext(connection) as callback_queries:
                took, done = timed(lambda: member.follow(redirect))  # noqa: B023
            assert done.status_code == 302, done.content[:300]
            steps["callback"].append(took)
            steps["callback_own"].append(took - sum(token_wait))
            queries = {"start": len(start_queries), "callback": len(callback_queries)}
            tls_per_round.append(tls_connects.count(entra) - tls_before)
        endpoints = [entry["endpoint"] for entry in emulator.log()[log_start:]]

        from accounts.models import User

        User.objects.create_user("floor", password=None)
        floors = {name: [] for name in ("bare", "session", "login")}
        floor_queries: dict[str, int] = {}
        for _ in range(rounds):
            for name in floors:
                browser = fresh_browser()  # a new session, as a flow start makes
                with CaptureQueriesContext(connection) as captured:
                    took, _ = timed(lambda: browser.get(f"/floor/{name}"))  # noqa: B023
                floors[name].append(took)
                floor_queries[name] = len(captured)

        pages = pages_at_scale(admin, Person(demo, demo.member, client=Client()), account, rounds)

    medians = {name: median_ms(samples) for name, samples in {**steps, **floors}.items()}
    results = {
        "rounds": rounds,
        "median_ms": medians,
        "p95_ms": {name: p95_ms(samples) for name, samples in {**steps, **floors}.items()},
        "ratios": {
            "start / session floor": round(medians["start"] / medians["session"], 2),
            "callback own time / login floor": round(medians["callback_own"] / medians["login"], 2),
            "bare view": medians["bare"],
        },
        "queries": {**queries, **{f"floor {k}": v for k, v in floor_queries.items()}},
        "entra_requests_per_sign_in": {
            name: round(endpoints.count(name) / rounds, 2)
            for name in ("token", "discovery", "jwks")
        },
        "new_tls_connections_to_entra": {
            "first sign-in": tls_per_round[0],
            "per sign-in after it": round(sum(tls_per_round[1:]) / max(1, rounds - 1), 2),
        },
        "pages": pages,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


def pages_at_scale(admin, member, account, rounds: int) -> dict[str, dict[str, float]]:
    """The account home (a member) and the Connections page (its admin), timed and counted
    with 1, 100 and 10,000 accounts in the database."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Account
    from tests.bulk import add_accounts

    assert member.sign_in(account).status_code == 302
    pages = {"home": f"/business/{account.account_id}", "connections": "/settings/connections"}
    results: dict[str, dict[str, float]] = {}
    for total in (1, 100, 10_000):
        missing = total - Account.objects.count()
        if missing > 0:
            add_accounts(missing)
        for name, url in pages.items():
            client = member.client if name == "home" else admin.client
            samples = []
            for _ in range(rounds):
                with CaptureQueriesContext(connection) as captured:
                    took, response = timed(lambda: client.get(url))  # noqa: B023
                assert response.status_code == 200, (name, response.status_code)
                samples.append(took)
            results[f"{name} at {total:,}"] = {
                "median_ms": median_ms(samples),
                "queries": len(captured),
            }
    return results


def markdown(results: dict) -> str:
    median, p95 = results["median_ms"], results["p95_ms"]
    lines = [
        f"{results['rounds']} sign-ins, in-process (Django test client), SQLite in memory",
        "",
        "| step | median ms | p95 ms | SQL statements |",
        "| --- | ---: | ---: | ---: |",
    ]
    rows = [
        ("sign-in start (POST /business/<id>/signin)", "start", "start"),
        ("sign-in callback (GET /OAuth2?identityOnly=true)", "callback", "callback"),
        ("callback minus the wait on the token endpoint", "callback_own", None),
        ("floor: bare view", "bare", "floor bare"),
        ("floor: a new session holding one value", "session", "floor session"),
        ("floor: auth.login() for an existing user", "login", "floor login"),
    ]
    for label, key, query_key in rows:
        count = results["queries"].get(query_key, "") if query_key else ""
        lines.append(f"| {label} | {median[key]} | {p95[key]} | {count} |")
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value} |" for name, value in results["ratios"].items()]
    lines += ["", "| page | median ms | queries |", "| --- | ---: | ---: |"]
    lines += [
        f"| {name} | {row['median_ms']} | {row['queries']} |"
        for name, row in results["pages"].items()
    ]
    calls = results["entra_requests_per_sign_in"]
    tls = results["new_tls_connections_to_entra"]
    lines += [
        "",
        f"Entra ID requests per sign-in: token {calls['token']}, discovery {calls['discovery']}, "
        f"jwks {calls['jwks']}. New TLS connections to Entra ID: {tls['first sign-in']} on "
        f"the first sign-in, {tls['per sign-in after it']} per sign-in after it. "
        f"Peak RSS: {results['peak_rss_mb']} MB.",
        f"Written to {RESULTS.relative_to(ROOT)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
