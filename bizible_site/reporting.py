"""Error reports (the DEBUG page and production reports) that never carry a secret.

Django hides sensitive POST fields and variables only outside DEBUG, and never hides query
parameters; an Entra ID callback carries its authorization code in the query string.
"""

import re

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# Query parameters of an Entra ID redirect that are secrets or bind to one.
_AUTH_RESPONSE_PARAMETERS = {"code", "state", "session_state", "client_info", "id_token"}
_URL_META = {"QUERY_STRING", "REQUEST_URI", "RAW_URI"}


class AlwaysSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Active in DEBUG too: a developer's shared screen or pasted error page must not carry a
    customer's client secret. Also hides the settings that hold a server's password in a URL
    (DATABASE_URL, CACHE_URL, EMAIL_URL and the cache's LOCATION), which Django's own list
    misses (EMAIL_HOST_PASSWORD it hides already)."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern
        + "|^(DATABASE|CACHE|EMAIL)_URL$|^LOCATION$",
        flags=re.I,
    )

    def is_active(self, request) -> bool:
        return True

    def cleanse_special_types(self, request, value):
        """A request in any frame shows its method and path, not its query string."""
        if isinstance(value, HttpRequest):
            return f"<{type(value).__name__}: {value.method} {value.path}>"
        return super().cleanse_special_types(request, value)

    def get_safe_request_meta(self, request) -> dict:
        meta = super().get_safe_request_meta(request)
        return {k: self.cleansed_substitute if k in _URL_META else v for k, v in meta.items()}


class SafeExceptionReporter(ExceptionReporter):
    """Also hides the callback's query parameters and the query part of the request URL."""

    def get_traceback_data(self) -> dict:
        data = super().get_traceback_data()
        if self.request is not None:
            data["request_GET_items"] = [
                (
                    key,
                    self.filter.cleansed_substitute if key in _AUTH_RESPONSE_PARAMETERS else value,
                )
                for key, value in self.request.GET.items()
            ]
            data["request_insecure_uri"] = data.get("request_insecure_uri", "").split("?")[0]
        return data
