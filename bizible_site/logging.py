"""One log line per event, as `key=value` pairs (or JSON) that log search tools can index.

Auth events are logged with `extra={"event": ..., "account": ..., "outcome": ...}`; every extra
field is appended, and `duration_ms` (since the request began) is added to each. Values are
quoted when they contain spaces. Callers pass identifiers and AADSTS codes only, never secrets
or tokens (tests assert that on captured records).
"""

import json
import logging
import time
from contextvars import ContextVar

# When the request being served began (set by RequestTimingMiddleware), for durations.
REQUEST_STARTED: ContextVar[float | None] = ContextVar("request_started", default=None)

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: object) -> str:
    """One value, escaped so that no value can end its field, forge another, or start a line:
    backslashes, quotes and every control or line-breaking character are written as escapes."""
    text = "".join(
        _ESCAPES.get(c) or (f"\\u{ord(c):04x}" if not c.isprintable() else c) for c in str(value)
    )
    return f'"{text}"' if (" " in text or "=" in text or '"' in text or not text) else text


def _describe(key: str, value: object) -> object:
    """Django's request logging passes the request itself: keep its method and path only, as
    its query string can hold an authorization code."""
    if key == "request" and hasattr(value, "path"):
        return f"{getattr(value, 'method', '')} {value.path}"
    return value


class AuthEventDurationFilter(logging.Filter):
    """Adds ``duration_ms`` (since the request began) to every event line logged while a
    request is served: the sign-in, signup or re-authorization step it ends, timed."""

    def filter(self, record: logging.LogRecord) -> bool:
        started = REQUEST_STARTED.get()
        if started is not None and hasattr(record, "event") and not hasattr(record, "duration_ms"):
            record.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return True


class KeyValueFormatter(logging.Formatter):
    """``time=... level=... logger=... msg="..." key=value ...``, every value escaped."""

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        fields: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(
            (key, _describe(key, value))
            for key, value in vars(record).items()
            if key not in _STANDARD_ATTRS
        )
        return fields

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{key}={_quote(value)}" for key, value in self.fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(KeyValueFormatter):
    """The same fields as one JSON object per line (``LOG_FORMAT=json``); a traceback goes in
    ``exception``, so a record is always exactly one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {key: _json_value(value) for key, value in self.fields(record).items()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=True)


def _json_value(value: object) -> object:
    return value if isinstance(value, bool | int | float) or value is None else str(value)
