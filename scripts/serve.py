"""`make serve`: the app in production mode under gunicorn, as a deployment runs it.

DEBUG is off; every value a deployment must set is checked first, with one message naming all
that are missing; then the database is migrated, static files are collected (WhiteNoise serves
them compressed and hashed), and gunicorn takes over this process with WEB_CONCURRENCY workers
(default: 2 x cores + 1) on 0.0.0.0:PORT (default 8000), reading gunicorn.conf.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REQUIRED = {
    "DJANGO_SECRET_KEY": "a long random string, the same on every app process",
    "FIELD_ENCRYPTION_KEYS": "Fernet keys, newest first, the same on every app process",
    "PUBLIC_BASE_URL": "the https URL customers use (the redirect URIs are built from it)",
    "ALLOWED_HOSTS": "the host names the app answers to",
    "DATABASE_URL": "PostgreSQL, e.g. postgres://user:password@db:5432/dynamics",
    "DEFAULT_FROM_EMAIL": "the sender of the connection notices to admins",
    "EMAIL_URL": "the SMTP server for them, e.g. smtp://user:password@smtp.example:587/?tls=True",
}


def missing_settings(environ: dict[str, str]) -> list[str]:
    return [f"  {name}: {why}" for name, why in REQUIRED.items() if not environ.get(name, "")]


def main() -> None:
    env = {**os.environ, "DJANGO_DEBUG": "false"}
    missing = missing_settings(env)
    if missing:
        sys.exit(
            "make serve needs these settings (see .env.example and README, Deploying):\n"
            + "\n".join(missing)
        )
    manage = [sys.executable, str(ROOT / "manage.py")]
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "--verbosity", "0"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True)
    workers = env.get("WEB_CONCURRENCY") or str(2 * (os.cpu_count() or 1) + 1)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    os.chdir(ROOT)
    os.execve(  # noqa: S606 - our own gunicorn, fixed arguments
        gunicorn,
        [
            gunicorn,
            "--workers",
            workers,
            "--bind",
            f"0.0.0.0:{env.get('PORT', '8000')}",
            "--no-control-socket",  # two instances on one machine would share it otherwise
        ],
        env,
    )


if __name__ == "__main__":
    main()
