"""Settings come from the environment, and bad values stop the process at start-up."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

ROOT = Path(__file__).resolve().parents[2]
VALID_KEY = "eB4DBo7t5RMaRwQHJ_MX6eNg1YMhj51ri2kUTxghQ-U="


def run_python(tmp_path, code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with exactly this environment (over a base that
    starts: a secret key, a valid encryption key, VAR_DIR in tmp_path)."""
    base = {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": "k" * 50,
        "FIELD_ENCRYPTION_KEYS": VALID_KEY,
        "VAR_DIR": str(tmp_path),
        "DEFAULT_FROM_EMAIL": "dynamics-connect@connect.example.com",
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def load_settings(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Import the settings module in a fresh interpreter with exactly this environment."""
    return run_python(
        tmp_path,
        "import bizible_site.settings as s; "
        "print(s.DEBUG, s.DATABASES['default']['ENGINE'], s.ENTRA_AUTHORITY_HOST, "
        "s.DYNAMICS_EXTRA_ALLOWED_ORIGINS, s.ENTRA_HTTP_TIMEOUT)",
        **env,
    )


def test_debug_is_off_and_sqlite_under_var_is_the_default(tmp_path):
    result = load_settings(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == [
        "False",
        "django.db.backends.sqlite3",
        "https://login.microsoftonline.com",
    ]


def test_postgresql_comes_from_database_url(tmp_path):
    result = load_settings(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/test")

    assert result.returncode == 0, result.stderr
    assert "django.db.backends.postgresql" in result.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("ENTRA_HTTP_TIMEOUT", "ten"),
        ("ENTRA_HTTP_TIMEOUT", "-1"),
        ("ENTRA_AUTHORITY_HOST", "login.microsoftonline.com"),
        ("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com/organizations"),
        ("PUBLIC_BASE_URL", "https://app.example.com/?x=1"),
        ("PUBLIC_BASE_URL", "ftp://app.example.com"),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    result = load_settings(tmp_path, **{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_a_missing_secret_key_stops_start_up_outside_debug(tmp_path):
    result = load_settings(tmp_path, DJANGO_SECRET_KEY="")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_extra_dynamics_origins_are_refused_when_debug_is_off(tmp_path):
    result = load_settings(tmp_path, DYNAMICS_EXTRA_ALLOWED_ORIGINS="https://127.0.0.1:8443")

    assert result.returncode != 0
    assert "development only" in result.stderr


def test_extra_dynamics_origins_are_accepted_in_development(tmp_path):
    result = load_settings(
        tmp_path,
        DJANGO_DEBUG="true",
        DYNAMICS_EXTRA_ALLOWED_ORIGINS="https://127.0.0.1:8443/, https://LOCALHOST:8443",
    )

    assert result.returncode == 0, result.stderr
    assert "['https://127.0.0.1:8443', 'https://localhost:8443']" in result.stdout


def test_a_plain_http_authority_fails_the_system_checks(settings):
    settings.ENTRA_AUTHORITY_HOST = "http://127.0.0.1:8443"

    with pytest.raises(SystemCheckError, match=r"accounts\.E001"):
        call_command("check")


def test_a_missing_ca_bundle_file_fails_the_system_checks(settings, tmp_path):
    settings.ENTRA_CA_BUNDLE = str(tmp_path / "missing.pem")

    with pytest.raises(SystemCheckError, match=r"accounts\.E002"):
        call_command("check")


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("http://connect.example.com", True),
        ("https://connect.example.com", False),
        ("http://localhost:8000", False),  # Entra ID's own exception for loopback
    ],
)
def test_the_wsgi_entry_point_refuses_a_plain_http_public_url_without_debug(
    tmp_path, base_url, refused
):
    result = run_python(tmp_path, "import bizible_site.wsgi", PUBLIC_BASE_URL=base_url)

    assert (result.returncode != 0) is refused, result.stderr
    assert ("accounts.E003" in result.stderr) is refused


def test_the_wsgi_entry_point_refuses_to_start_without_encryption_keys(tmp_path):
    result = run_python(tmp_path, "import bizible_site.wsgi", FIELD_ENCRYPTION_KEYS="")

    assert result.returncode != 0
    assert "connections.E001" in result.stderr


def test_the_wsgi_entry_point_refuses_to_start_without_a_sender_for_the_notices(tmp_path):
    result = run_python(tmp_path, "import bizible_site.wsgi", DEFAULT_FROM_EMAIL="")

    assert result.returncode != 0
    assert "accounts.E004" in result.stderr


def test_a_required_table_a_check_cannot_read_stops_the_start(tmp_path):
    result = run_python(
        tmp_path, "import bizible_site.wsgi", DYNAMICS_REQUIRED_TABLES="leads,widgets"
    )

    assert result.returncode != 0
    assert "connections.E002" in result.stderr and "widgets" in result.stderr


def test_email_url_configures_smtp_and_its_password_never_shows_in_error_reports(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "from bizible_site.reporting import AlwaysSafeExceptionReporterFilter as F; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS); "
        "safe = F().get_safe_settings(); "
        "print(safe['EMAIL_URL'], safe['EMAIL_HOST_PASSWORD'])"
    )
    result = run_python(
        tmp_path,
        code,
        DJANGO_SETTINGS_MODULE="bizible_site.settings",
        DJANGO_DEBUG="true",
        EMAIL_URL="smtp://notices:s3cr3t-pw@smtp.example.com:587/?tls=True",
    )

    assert "django.core.mail.backends.smtp.EmailBackend smtp.example.com 587 True" in result.stdout
    assert "s3cr3t-pw" not in result.stdout, result.stdout


def test_row_68_the_session_cookie_stays_lax_so_the_entra_callback_keeps_its_session(settings):
    assert settings.SESSION_COOKIE_SAMESITE == "Lax"
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"


def test_row_46_msal_never_logs_below_warning(settings):
    """MSAL logs the authorization code at DEBUG."""
    assert settings.LOGGING["loggers"]["msal"]["level"] == "WARNING"


def test_row_65_production_settings_pass_the_deployment_checks_without_warnings(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": "pr0duct10n-" + "x7Kq9" * 10,
        "FIELD_ENCRYPTION_KEYS": VALID_KEY,
        "PUBLIC_BASE_URL": "https://connect.example.com",
        "ALLOWED_HOSTS": "connect.example.com",
        "VAR_DIR": str(tmp_path),
        "DEFAULT_FROM_EMAIL": "dynamics-connect@connect.example.com",
        "EMAIL_URL": "smtp://notices:p4ss@smtp.connect.example.com:587/?tls=True",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize(
    ("base_url", "names"),
    [
        ("https://connect.example.com", "__Host-sessionid __Host-csrftoken"),
        ("http://localhost:8000", "sessionid csrftoken"),  # __Host- needs Secure
    ],
)
def test_cookies_get_host_only_names_when_served_over_https(tmp_path, base_url, names):
    result = run_python(
        tmp_path,
        "from django.conf import settings as s; print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME)",
        PUBLIC_BASE_URL=base_url,
        DJANGO_SETTINGS_MODULE="bizible_site.settings",
    )

    assert result.stdout.strip() == names, result.stderr


def test_log_format_json_is_chosen_by_the_environment_and_anything_else_refused(tmp_path):
    show = "import bizible_site.settings as s; print(s.LOGGING['handlers']['console']['formatter'])"

    assert run_python(tmp_path, show, LOG_FORMAT="json").stdout.strip() == "json"
    refused = run_python(tmp_path, show, LOG_FORMAT="xml")
    assert refused.returncode != 0 and "LOG_FORMAT must be keyvalue or json" in refused.stderr
