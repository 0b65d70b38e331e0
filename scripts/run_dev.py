"""`make run`: the app and the local Entra ID emulator together, on SQLite, for a person.

Creates development keys under var/ on first run, starts the emulator with the demo seed
(HTTPS on EMULATOR_PORT, browser pages on EMULATOR_BROWSER_PORT), migrates, prints the demo
values to type into the signup form, and serves the app on http://localhost:PORT. Ctrl-C
stops both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from entra_emulator.testing import EmulatorError, run_emulator  # noqa: E402
from lib.crypto import generate_key  # noqa: E402

VAR = ROOT / "var"
DEV_ENV = VAR / "dev.env"
DEMO_SEED = ROOT / "entra_emulator" / "demo_seed.json"


def port(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"{name} must be a TCP port number, not {raw!r}.")
    return int(raw)


def development_keys() -> dict[str, str]:
    """Read var/dev.env, writing it (mode 0600) with fresh keys on first run."""
    if not DEV_ENV.exists():
        import secrets

        VAR.mkdir(exist_ok=True)
        DEV_ENV.write_text(
            "# Development keys written by `make run`. Never use them in production.\n"
            f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n"
            f"FIELD_ENCRYPTION_KEYS={generate_key()}\n"
        )
        DEV_ENV.chmod(0o600)
        print(f"Wrote development keys to {DEV_ENV.relative_to(ROOT)}.")
    pairs = (line.split("=", 1) for line in DEV_ENV.read_text().splitlines())
    return {key: value for key, *rest in pairs if not key.startswith("#") for value in rest}


def demo_values(emulator_url: str, public_base_url: str) -> list[tuple[str, str]]:
    seed = json.loads(DEMO_SEED.read_text())
    app = seed["apps"][0]
    users = seed["tenants"][0]["users"]
    return [
        ("Client Id", app["client_id"]),
        ("Client Secret", app["secrets"][0]["value"]),
        ("Second Client Secret", app["secrets"][1]["value"]),
        ("Application Id URL", emulator_url),
        ("Admin user", users[0]["upn"]),
        ("Member user", users[1]["upn"]),
        ("Sign up at", f"{public_base_url}/Dynamics/Signup"),
    ]


def main() -> None:
    app_port = port("PORT", 8000)
    https_port = port("EMULATOR_PORT", 8443)
    browser_port = port("EMULATOR_BROWSER_PORT", 8080)
    emulator_url = f"https://127.0.0.1:{https_port}"
    public_base_url = f"http://localhost:{app_port}"
    env = {
        **os.environ,
        **development_keys(),
        "DJANGO_DEBUG": "true",
        "PUBLIC_BASE_URL": public_base_url,
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "ENTRA_AUTHORITY_HOST": emulator_url,
        "ENTRA_CA_BUNDLE": str(VAR / "emulator" / "ca.pem"),
        "DYNAMICS_EXTRA_ALLOWED_ORIGINS": f"{emulator_url},https://localhost:{https_port}",
    }
    try:
        with run_emulator(
            DEMO_SEED,
            VAR / "emulator",
            env={"PUBLIC_BASE_URL": public_base_url},
            # So that the README's tour can break, throttle or restrict the demo connection.
            test_api=True,
            port=https_port,
            browser_port=browser_port,
            echo=True,
        ) as emulator:
            print(emulator.ready_line)
            serve(env, app_port, demo_values(emulator_url, public_base_url))
    except EmulatorError as problem:
        sys.exit(f"The Entra ID emulator did not start: {problem}")


def check_now_and_then(env: dict[str, str], stop: threading.Event) -> None:
    """Development's cron: `manage.py check_connections` every CHECK_INTERVAL seconds (default
    60), so that a connection that breaks shows its e-mail in this console."""
    interval = float(env.get("CHECK_INTERVAL", "60"))
    while not stop.wait(interval):
        subprocess.run(
            [sys.executable, "manage.py", "check_connections", "--quiet"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.DEVNULL,  # the e-mails (console backend) go to stdout
            check=False,
        )


def serve(env: dict[str, str], app_port: int, demo: list[tuple[str, str]]) -> None:
    """Migrate, print the demo values, and run the app until Ctrl-C."""
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True)
    print("\nDemo values for the signup form (the emulator's demo tenant, Contoso):")
    for label, value in demo:
        print(f"{label}: {value}")
    print(
        f"\nDynamics Connect is at {env['PUBLIC_BASE_URL']}/ (Ctrl-C stops it and the emulator)\n",
        flush=True,
    )
    app = subprocess.Popen([*manage, "runserver", f"127.0.0.1:{app_port}"], cwd=ROOT, env=env)
    stop = threading.Event()
    threading.Thread(target=check_now_and_then, args=(env, stop), daemon=True).start()
    try:
        app.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if app.poll() is None:
            app.send_signal(signal.SIGINT)
            try:
                app.wait(timeout=10)
            except subprocess.TimeoutExpired:
                app.kill()


if __name__ == "__main__":
    main()
