"""Settings for Dynamics Connect, every value read from the environment.

`.env.example` documents each variable. Nothing here talks to the network or the database;
misconfiguration that needs more than a type check is reported by the system checks in
`accounts/checks.py`, which `manage.py` commands and `wsgi.py` run at start-up.
"""

from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

from bizible_site.env import (
    env_bool,
    env_float,
    env_list,
    env_origin,
    env_origin_list,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", False)

# A fixed, clearly unsafe key only in DEBUG, so that `manage.py` works for a developer without
# any set-up. Without DEBUG the app refuses to start unless DJANGO_SECRET_KEY is set.
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or (
    "insecure-development-key-do-not-use-in-production" if DEBUG else ""
)
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")

PUBLIC_BASE_URL = env_origin("PUBLIC_BASE_URL", "http://localhost:8000", allow_path=True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- Entra ID and Dynamics ------------------------------------------------------------------
ENTRA_AUTHORITY_HOST = env_origin("ENTRA_AUTHORITY_HOST", "https://login.microsoftonline.com")
ENTRA_CA_BUNDLE = env_str("ENTRA_CA_BUNDLE")
ENTRA_HTTP_TIMEOUT = env_float("ENTRA_HTTP_TIMEOUT", 10.0, minimum=0.1, maximum=120.0)
DYNAMICS_HTTP_TIMEOUT = env_float("DYNAMICS_HTTP_TIMEOUT", 15.0, minimum=0.1, maximum=120.0)
# Minutes a started sign-in, signup or re-authorization stays valid.
AUTH_FLOW_TTL_MINUTES = int(env_float("AUTH_FLOW_TTL_MINUTES", 15, minimum=1, maximum=60))

# Extra Dynamics org origins accepted as "Application Id URL", such as the local emulator's.
# Development only: an extra origin would let a customer point us at any host.
DYNAMICS_EXTRA_ALLOWED_ORIGINS = env_origin_list("DYNAMICS_EXTRA_ALLOWED_ORIGINS")
if DYNAMICS_EXTRA_ALLOWED_ORIGINS and not DEBUG:
    raise ImproperlyConfigured(
        "DYNAMICS_EXTRA_ALLOWED_ORIGINS is for development only and is refused when "
        "DJANGO_DEBUG is off."
    )

# POSTs per minute and client address that may start a signup, sign-in or re-authorization
# (0 turns the limit off); TRUSTED_PROXY_COUNT proxies in front set X-Forwarded-For.
AUTH_RATE_LIMIT_PER_MINUTE = int(env_float("AUTH_RATE_LIMIT_PER_MINUTE", 20, maximum=100000))
TRUSTED_PROXY_COUNT = int(env_float("TRUSTED_PROXY_COUNT", 0, maximum=10))
# --- E-mail (connection notices to admins) -------------------------------------------------
# EMAIL_URL: smtp://user:password@host:587/?tls=True (dj-email-url) sets the EMAIL_* settings;
# without it the e-mails go to the console (development; a system check warns in production).
EMAIL_URL = env_str("EMAIL_URL")
if EMAIL_URL:
    globals().update(dj_email_url.parse(EMAIL_URL))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or (
    "dynamics-connect@localhost" if DEBUG else ""
)
EMAIL_TIMEOUT = 10

# The tables a connection check reads one row of: the connected user must be able to read them.
DYNAMICS_REQUIRED_TABLES = env_list("DYNAMICS_REQUIRED_TABLES") or [
    "leads",
    "contacts",
    "accounts",
    "opportunities",
    "campaigns",
]
# How long a certificate the product generates for an app registration is valid.
CERTIFICATE_VALID_MONTHS = int(env_float("CERTIFICATE_VALID_MONTHS", 12, minimum=1, maximum=24))

# Newest key first: the first encrypts, all decrypt (see connections/crypto.py).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")

# --- Django ---------------------------------------------------------------------------------
INSTALLED_APPS = [
    "accounts.admin_site.ThrottledAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "accounts",
    "connections",
]

MIDDLEWARE = [
    "bizible_site.middleware.RequestTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "bizible_site.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "bizible_site.middleware.SessionIdleTimeoutMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bizible_site.urls"
WSGI_APPLICATION = "bizible_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.current_account",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite default lives here
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=int(env_float("DATABASE_CONN_MAX_AGE", 60, maximum=86400)),
        conn_health_checks=True,
    )
}
# A Redis server (redis:// or rediss://) shared by every app process: the cache (flows in
# progress) and the rate limits' counters. Unset, both live in the database: no extra service.
CACHE_URL = env_redis_url("CACHE_URL")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "dynamics_connect_cache",
            # Flows in progress live here (15 minutes each): room for 50,000 at once before
            # Django culls (300 by default); past a few, use Redis (CACHE_URL).
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        }
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "/"

# Sessions live in the database so that a flow started on one app process completes on another.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Lax, never Strict: Entra ID's redirect back to /OAuth2 is a cross-site top-level GET that must
# carry the session holding the flow.
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(env_float("SESSION_COOKIE_AGE", 8 * 3600, minimum=300, maximum=30 * 86400))
_HTTPS = PUBLIC_BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _HTTPS)
if SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE:
    # __Host-: the browser keeps them only if Secure, for this host alone and path /, so a
    # sibling subdomain can neither set nor overwrite them.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
# A session unused this long ends (the absolute limit is SESSION_COOKIE_AGE).
SESSION_IDLE_MINUTES = int(env_float("SESSION_IDLE_MINUTES", 60, minimum=5, maximum=24 * 60))
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _HTTPS and not DEBUG)
SECURE_HSTS_SECONDS = int(
    env_float("SECURE_HSTS_SECONDS", 31536000 if _HTTPS else 0, maximum=63072000)
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", _HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _HTTPS)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

DEFAULT_EXCEPTION_REPORTER = "bizible_site.reporting.SafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "bizible_site.reporting.AlwaysSafeExceptionReporterFilter"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# `keyvalue` (key=value pairs) or `json` (one object per line), for the log pipeline.
LOG_FORMAT = env_str("LOG_FORMAT", "keyvalue").lower()
if LOG_FORMAT not in {"keyvalue", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT must be keyvalue or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "keyvalue": {"()": "bizible_site.logging.KeyValueFormatter"},
        "json": {"()": "bizible_site.logging.JsonFormatter"},
    },
    "filters": {"duration": {"()": "bizible_site.logging.AuthEventDurationFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["duration"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # MSAL logs the authorization code at DEBUG: never let it below INFO.
        "msal": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
