"""WSGI entry point (gunicorn).

gunicorn does not run Django's system checks, so this module runs them once per process and
refuses to serve on any error: a production process with missing encryption keys or a
plain-http Entra ID authority never starts.
"""

import os

from django.core import checks
from django.core.management.base import SystemCheckError
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bizible_site.settings")

application = get_wsgi_application()

_errors = [m for m in checks.run_checks() if m.level >= checks.ERROR and not m.is_silenced()]
if _errors:
    raise SystemCheckError("\n".join(str(error) for error in _errors))
